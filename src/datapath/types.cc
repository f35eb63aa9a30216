#include "datapath/types.h"

#include <time.h>

namespace sebpf::datapath {

BootClock::time_point BootClock::now() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

std::string_view mode_name(Mode mode) {
  switch (mode) {
    case Mode::kDisabled:
      return "disabled";
    case Mode::kAllowlist:
      return "allowlist";
    case Mode::kDenylist:
      return "denylist";
    case Mode::kBlockAll:
      return "block_all";
  }
  return "unknown";
}

Result<Mode> parse_mode(std::string_view text) {
  for (Mode m : {Mode::kDisabled, Mode::kAllowlist, Mode::kDenylist, Mode::kBlockAll}) {
    if (text == mode_name(m)) return m;
  }
  return Error(Errc::kInvalidArgument,
               "unknown mode \"" + std::string(text) +
                   "\": expected disabled, allowlist, denylist or block_all");
}

std::string_view action_name(Action action) { return action == Action::kAllow ? "allow" : "deny"; }

std::string to_string(const AttachmentKey& key) {
  return (key.kind == TargetKind::kCgroup ? "cgroup:" : "ifindex:") + std::to_string(key.id);
}

std::string_view reason_name(Reason reason) {
  switch (reason) {
    case SEBPF_REASON_ALLOW_MODE_DISABLED:
      return "allow_mode_disabled";
    case SEBPF_REASON_ALLOW_RULE:
      return "allow_rule";
    case SEBPF_REASON_ALLOW_DEFAULT:
      return "allow_default";
    case SEBPF_REASON_ALLOW_REPLY:
      return "allow_reply";
    case SEBPF_REASON_ALLOW_LOOPBACK:
      return "allow_loopback";
    case SEBPF_REASON_ALLOW_DNS_ENDPOINT:
      return "allow_dns_endpoint";
    case SEBPF_REASON_ALLOW_LINK_LOCAL:
      return "allow_link_local";
    case SEBPF_REASON_ALLOW_DNS_STEERED:
      return "allow_dns_steered";
    case SEBPF_REASON_ALLOW_KEPT_CONNECTION:
      return "allow_kept_connection";
    case SEBPF_REASON_DENY_RULE:
      return "deny_rule";
    case SEBPF_REASON_DENY_DEFAULT:
      return "deny_default";
    case SEBPF_REASON_DENY_BLOCK_ALL:
      return "deny_block_all";
    case SEBPF_REASON_DENY_NOT_IP:
      return "deny_not_ip";
    case SEBPF_REASON_DENY_MALFORMED:
      return "deny_malformed";
    case SEBPF_REASON_DENY_FORGED:
      return "deny_forged";
    case SEBPF_REASON_DENY_RESOLVER:
      return "deny_resolver";
    case SEBPF_REASON_COUNT:
      break;
  }
  return "unknown";
}

std::string_view hook_kind_name(HookKind hook) {
  return hook == SEBPF_HOOK_PACKET ? "packet" : "socket";
}

}  // namespace sebpf::datapath
