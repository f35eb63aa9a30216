#include "ctl/arguments.h"

#include <charconv>
#include <limits>

namespace sebpf::ctl {
namespace {

Error invalid(std::string message) { return Error(Errc::kInvalidArgument, std::move(message)); }

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

}  // namespace

Result<v1::Mode> parse_mode(std::string_view text) {
  if (text == "disabled") return v1::MODE_DISABLED;
  if (text == "allowlist") return v1::MODE_ALLOWLIST;
  if (text == "denylist") return v1::MODE_DENYLIST;
  if (text == "block_all" || text == "block-all") return v1::MODE_BLOCK_ALL;
  return invalid("unknown mode " + quoted(text) +
                 "; one of disabled, allowlist, denylist, block_all");
}

std::string_view mode_name(v1::Mode mode) {
  switch (mode) {
    case v1::MODE_DISABLED:
      return "disabled";
    case v1::MODE_ALLOWLIST:
      return "allowlist";
    case v1::MODE_DENYLIST:
      return "denylist";
    case v1::MODE_BLOCK_ALL:
      return "block_all";
    default:
      return "unspecified";
  }
}

Result<v1::Action> parse_action(std::string_view text) {
  if (text == "allow") return v1::ACTION_ALLOW;
  if (text == "deny") return v1::ACTION_DENY;
  return invalid("unknown action " + quoted(text) + "; one of allow, deny");
}

std::string_view action_name(v1::Action action) {
  switch (action) {
    case v1::ACTION_ALLOW:
      return "allow";
    case v1::ACTION_DENY:
      return "deny";
    default:
      return "unspecified";
  }
}

Result<uint64_t> parse_ttl(std::string_view text) {
  const auto bad = [&] {
    return invalid("bad TTL " + quoted(text) +
                   "; whole seconds or a number with one unit: 90, 90s, 15m, 12h, 7d");
  };
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [rest, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range) return invalid("TTL " + quoted(text) + " is too long");
  if (ec != std::errc() || rest == text.data()) return bad();
  uint64_t unit = 1;
  const std::string_view suffix(rest, static_cast<size_t>(end - rest));
  if (suffix == "" || suffix == "s") {
    unit = 1;
  } else if (suffix == "m") {
    unit = 60;
  } else if (suffix == "h") {
    unit = 3600;
  } else if (suffix == "d") {
    unit = 86400;
  } else {
    return bad();
  }
  if (value == 0) {
    return invalid("TTL " + quoted(text) +
                   " is zero; leave --ttl out for a rule that never expires");
  }
  if (value > std::numeric_limits<uint64_t>::max() / unit) {
    return invalid("TTL " + quoted(text) + " is too long");
  }
  return value * unit;
}

Result<std::pair<std::string, std::string>> parse_metadata(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return invalid("metadata " + quoted(text) + " is not KEY=VALUE");
  }
  return std::pair{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

}  // namespace sebpf::ctl
