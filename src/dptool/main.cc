// superebpf-datapath: the datapath without a daemon. Loads the programs (or
// adopts the pinned ones), attaches, writes rules and reads counters, straight
// against the kernel state under the pin directory. For hosts and debugging
// before (or beside) superebpfd; each command is one process, and what it
// changes stays enforced after it exits.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "datapath/datapath.h"

namespace {

using namespace sebpf;
using datapath::Action;
using datapath::AttachmentKey;
using datapath::Datapath;

constexpr const char* kUsage = R"(usage: superebpf-datapath [--pin-dir DIR] COMMAND [ARGS]

Commands:
  status                         load or adopt the datapath; list attachments
  attach --cgroup PATH | --interface NAME [--mode MODE] [--direction ingress|egress]
  detach TARGET
  mode TARGET MODE               MODE: disabled, allowlist, denylist, block_all
  allow TARGET CIDR [--ttl SECONDS]
  deny TARGET CIDR [--ttl SECONDS]
  remove TARGET CIDR [allow|deny]
  rules TARGET
  counters TARGET
  sweep                          reclaim memory of expired rules
  destroy                        detach everything, remove the pins (ends enforcement)

TARGET is what attach printed: cgroup:ID or ifindex:N.
--pin-dir defaults to /sys/fs/bpf/superebpf.
)";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "superebpf-datapath: %s\n\n%s", why.c_str(), kUsage);
  return 2;
}

int fail(const Error& e) {
  std::fprintf(stderr, "superebpf-datapath: %s (%s)\n", e.message().c_str(),
               std::string(errc_name(e.code())).c_str());
  return 1;
}

Result<AttachmentKey> parse_target(const std::string& text) {
  const size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const std::string id = colon == std::string::npos ? "" : text.substr(colon + 1);
  char* end = nullptr;
  const unsigned long long v = std::strtoull(id.c_str(), &end, 10);
  if (id.empty() || *end != '\0' || (kind != "cgroup" && kind != "ifindex")) {
    return Error(Errc::kInvalidArgument,
                 "target \"" + text + "\" must be cgroup:ID or ifindex:N, as attach printed");
  }
  return AttachmentKey{
      kind == "cgroup" ? datapath::TargetKind::kCgroup : datapath::TargetKind::kInterface, v};
}

std::string describe(const datapath::Attachment& a) {
  std::string s = datapath::to_string(a.key) + " mode=" + std::string(datapath::mode_name(a.mode)) +
                  " serial=" + std::to_string(a.serial);
  if (a.key.kind == datapath::TargetKind::kInterface) {
    s += a.direction == datapath::TcDirection::kIngress ? " guard=ingress" : " guard=egress";
  }
  if (a.dns.port) s += " dns_port=" + std::to_string(a.dns.port);
  return s;
}

// Flags after the positional arguments: --name value.
std::map<std::string, std::string> flags_of(std::vector<std::string>& args) {
  std::map<std::string, std::string> flags;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) == 0 && i + 1 < args.size()) {
      flags[args[i]] = args[i + 1];
      ++i;
    } else {
      rest.push_back(args[i]);
    }
  }
  args = rest;
  return flags;
}

int run(const std::string& command, std::vector<std::string> args, Datapath& dp) {
  auto flags = flags_of(args);
  auto need = [&](size_t n) { return args.size() == n; };
  if (command == "status") {
    auto list = dp.attachments();
    if (!list.ok()) return fail(list.error());
    std::printf("pin dir %s, %s, %zu attachment(s)\n", dp.config().pin_dir.c_str(),
                dp.adopted() ? "adopted pinned state" : "loaded afresh", list->size());
    for (const auto& note : dp.adoption_notes()) {
      const bool warning = note.level == datapath::AdoptionNote::Level::kWarning;
      std::printf("%s: %s\n", warning ? "warning" : "note", note.text.c_str());
    }
    for (const auto& a : *list) std::printf("%s\n", describe(a).c_str());
    return 0;
  }
  if (command == "attach") {
    datapath::AttachOptions options;
    if (flags.count("--mode")) {
      auto mode = datapath::parse_mode(flags["--mode"]);
      if (!mode.ok()) return fail(mode.error());
      options.mode = *mode;
    }
    if (flags.count("--direction")) {
      const std::string& d = flags["--direction"];
      if (d != "ingress" && d != "egress") return usage_error("--direction is ingress or egress");
      options.direction =
          d == "egress" ? datapath::TcDirection::kEgress : datapath::TcDirection::kIngress;
    }
    Result<datapath::Attachment> att = Error(Errc::kInvalidArgument, "");
    if (flags.count("--cgroup") && !flags.count("--interface")) {
      att = dp.attach_cgroup(flags["--cgroup"], options);
    } else if (flags.count("--interface") && !flags.count("--cgroup")) {
      att = dp.attach_interface(flags["--interface"], options);
    } else {
      return usage_error("attach needs exactly one of --cgroup PATH or --interface NAME");
    }
    if (!att.ok()) return fail(att.error());
    std::printf("%s\n", describe(*att).c_str());
    return 0;
  }
  if (command == "sweep" || command == "destroy") {
    if (command == "destroy") {
      auto s = dp.destroy();
      return s.ok() ? 0 : fail(s.error());
    }
    auto n = dp.sweep();
    if (!n.ok()) return fail(n.error());
    std::printf("reclaimed %zu expired or orphaned rule entries\n", *n);
    return 0;
  }
  if (args.empty()) return usage_error(command + " needs a TARGET");
  auto target = parse_target(args[0]);
  if (!target.ok()) return fail(target.error());
  const AttachmentKey key = *target;
  if (command == "detach" && need(1)) {
    auto s = dp.detach(key);
    return s.ok() ? 0 : fail(s.error());
  }
  if (command == "mode" && need(2)) {
    auto mode = datapath::parse_mode(args[1]);
    if (!mode.ok()) return fail(mode.error());
    auto s = dp.set_mode(key, *mode);
    return s.ok() ? 0 : fail(s.error());
  }
  if ((command == "allow" || command == "deny") && need(2)) {
    auto prefix = net::IpPrefix::parse(args[1]);
    if (!prefix.ok()) return fail(prefix.error());
    datapath::Rule rule{*prefix, command == "allow" ? Action::kAllow : Action::kDeny, {}};
    if (flags.count("--ttl")) {
      char* end = nullptr;
      const long ttl = std::strtol(flags["--ttl"].c_str(), &end, 10);
      if (*end != '\0' || ttl <= 0) return usage_error("--ttl takes a positive number of seconds");
      rule.expires = datapath::BootClock::now() + std::chrono::seconds(ttl);
    }
    auto s = dp.add_rule(key, rule);
    return s.ok() ? 0 : fail(s.error());
  }
  if (command == "remove" && (need(2) || need(3))) {
    auto prefix = net::IpPrefix::parse(args[1]);
    if (!prefix.ok()) return fail(prefix.error());
    std::optional<Action> action;
    if (need(3)) {
      if (args[2] != "allow" && args[2] != "deny") return usage_error("remove: allow or deny");
      action = args[2] == "allow" ? Action::kAllow : Action::kDeny;
    }
    auto s = dp.remove_rule(key, *prefix, action);
    return s.ok() ? 0 : fail(s.error());
  }
  if (command == "rules" && need(1)) {
    auto rules = dp.rules(key);
    if (!rules.ok()) return fail(rules.error());
    const auto now = datapath::BootClock::now();
    for (const auto& r : *rules) {
      std::string expiry = "never expires";
      if (r.expires) {
        const auto left = std::chrono::duration_cast<std::chrono::seconds>(*r.expires - now);
        expiry = left.count() > 0 ? "expires in " + std::to_string(left.count()) + "s" : "expired";
      }
      std::printf("%-5s %-44s %s\n", std::string(datapath::action_name(r.action)).c_str(),
                  r.prefix.to_string().c_str(), expiry.c_str());
    }
    return 0;
  }
  if (command == "counters" && need(1)) {
    auto c = dp.counters(key);
    if (!c.ok()) return fail(c.error());
    for (int h = 0; h < SEBPF_HOOK_COUNT; ++h) {
      for (int r = 0; r < SEBPF_REASON_COUNT; ++r) {
        const auto hook = static_cast<datapath::HookKind>(h);
        const auto reason = static_cast<datapath::Reason>(r);
        if (c->get(hook, reason) == 0) continue;
        std::printf("%-7s %-20s %llu\n", std::string(datapath::hook_kind_name(hook)).c_str(),
                    std::string(datapath::reason_name(reason)).c_str(),
                    static_cast<unsigned long long>(c->get(hook, reason)));
      }
    }
    return 0;
  }
  return usage_error("unknown command or wrong arguments: " + command);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  datapath::Config config;
  if (args.size() >= 2 && args[0] == "--pin-dir") {
    config.pin_dir = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::printf("%s", kUsage);
    return args.empty() ? 2 : 0;
  }
  if (config.pin_dir.empty()) return usage_error("--pin-dir must not be empty");
  auto dp = Datapath::open(config);
  if (!dp.ok()) return fail(dp.error());
  const std::string command = args[0];
  args.erase(args.begin());
  return run(command, args, **dp);
}
