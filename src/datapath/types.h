// The vocabulary of the datapath library: modes, rules, attachments,
// counters and the load-time configuration.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "datapath/shared_layout.h"
#include "net/ip_prefix.h"

namespace sebpf::datapath {

// CLOCK_BOOTTIME as a std::chrono clock: the kernel checks rule expiry
// against bpf_ktime_get_boot_ns(), which counts time spent suspended too.
struct BootClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept;
};

enum class Mode : uint8_t {
  kDisabled = SEBPF_MODE_DISABLED,
  kAllowlist = SEBPF_MODE_ALLOWLIST,
  kDenylist = SEBPF_MODE_DENYLIST,
  kBlockAll = SEBPF_MODE_BLOCK_ALL,
};
std::string_view mode_name(Mode mode);  // "disabled", "allowlist", "denylist", "block_all"
Result<Mode> parse_mode(std::string_view text);

enum class Action : uint8_t { kAllow, kDeny };
std::string_view action_name(Action action);

struct Rule {
  net::IpPrefix prefix;
  Action action = Action::kAllow;
  std::optional<BootClock::time_point> expires;  // none: never
  // An allow the DNS proxy learned from an answer (always a host, always
  // expiring); the daemon keeps learned and explicit rules apart, and
  // writes a learned rule only for a host that holds no rule of the user's
  // (either action): Datapath::add_rules overwrites its entry whole.
  bool learned = false;

  bool operator==(const Rule&) const = default;
};

enum class TargetKind : uint8_t { kCgroup, kInterface };

// Identifies an attachment in the kernel: a cgroup id or an ifindex.
struct AttachmentKey {
  TargetKind kind = TargetKind::kCgroup;
  uint64_t id = 0;

  auto operator<=>(const AttachmentKey&) const = default;
};
std::string to_string(const AttachmentKey& key);  // "cgroup:1234", "ifindex:7"

// Which TC hook of the host-side interface carries the guest's outgoing
// traffic. For a tap or the host end of a veth that is ingress.
enum class TcDirection : uint8_t { kIngress, kEgress };

// What a restore of an interface's TC filters undid: the hooks it put ours
// back on ("ingress", "egress") and what each held instead ("missing",
// "replaced": another program in our filter's place, "behind_another":
// ours, but another program's filter ran first, "unreadable"), each list
// comma-separated, in the same order. Empty when every hook had ours.
struct RestoredFilters {
  std::string hooks;
  std::string found;

  bool empty() const { return hooks.empty(); }
  void add(std::string_view hook, std::string_view what) {
    if (!empty()) {
      hooks += ',';
      found += ',';
    }
    hooks += hook;
    found += what;
  }
};

// Something a start found in the pinned state, and what it did about it.
struct AdoptionNote {
  enum class Level : uint8_t {
    kInfo,     // housekeeping: an attachment whose target went, an older
               // build's programs or maps unpinned, a detach finished
    kWarning,  // for the operator to look at: pins changed by hand, or
               // something a start could not do (it failed closed)
  };
  Level level;
  std::string text;
};

// The attachment's own DNS server, always reachable (UDP and TCP).
struct DnsEndpoint {
  std::optional<net::IpAddress> v4;
  std::optional<net::IpAddress> v6;
  uint16_t port = 0;  // 0: none

  bool operator==(const DnsEndpoint&) const = default;
};

struct AttachOptions {
  Mode mode = Mode::kAllowlist;  // fail closed until told otherwise
  DnsEndpoint dns;
  TcDirection direction = TcDirection::kIngress;  // interfaces only
  // In force from the first packet the attachment sees.
  std::vector<Rule> rules;
};

struct Attachment {
  AttachmentKey key;
  uint32_t slot = 0;
  uint32_t serial = 0;
  Mode mode = Mode::kAllowlist;
  DnsEndpoint dns;
  TcDirection direction = TcDirection::kIngress;
  bool l3_device = false;
};

using Reason = sebpf_reason;
using HookKind = sebpf_hook_kind;
std::string_view reason_name(Reason reason);     // "allow_rule", "deny_default", ...
std::string_view hook_kind_name(HookKind hook);  // "packet", "socket"

// Per-attachment counters, summed over CPUs.
struct Counters {
  std::array<std::array<uint64_t, SEBPF_REASON_COUNT>, SEBPF_HOOK_COUNT> count{};

  uint64_t get(HookKind hook, Reason reason) const { return count[hook][reason]; }
};

// Below this, a table would hardly hold one host's flows.
inline constexpr uint32_t kMinFlowsPerAttachment = 64;

struct Config {
  // Where maps and links are pinned on a bpffs. Empty: nothing is pinned
  // and enforcement ends with the process (tests, benchmarks).
  std::string pin_dir = "/sys/fs/bpf/superebpf";
  // Map sizes, fixed at first load. A process that adopts pinned state
  // keeps the sizes it finds (see Datapath::config()).
  uint32_t max_attachments = 1024;
  uint32_t max_host_rules = 131072;   // /32 and /128 rules, all attachments
  uint32_t max_prefix_rules = 16384;  // per family, all attachments
  // Each attachment's connection tracking: the inbound flows whose replies
  // pass, and the TCP connections opened under a learned rule, each in a
  // table of its own (an LRU: past this many, its oldest go), made when it
  // attaches. Fragments of replies get an eighth.
  uint32_t max_flows_per_attachment = 4096;
  // How long an idle inbound flow still lets replies through.
  std::chrono::seconds flow_idle_tcp{24 * 3600};
  std::chrono::seconds flow_idle_other{180};
  // A VM's DHCP requests (always allowed, and their options carry bytes
  // onto the link) per interface attachment and family: this many at
  // once, then one per interval.
  uint32_t dhcp_request_burst = 6;
  std::chrono::milliseconds dhcp_request_interval{20000};
  // Priority and handle of our filters in the clsact qdisc; the packet
  // socket filter (see Datapath::guard_packet_sockets) uses tc_handle + 1.
  uint32_t tc_priority = 1;
  uint32_t tc_handle = 0x5eb;
  // The ports of every attachment's DNS endpoint (0, 0: none). A cgroup
  // workload reaches loopback freely, so it could otherwise use another
  // attachment's endpoint, and with it that attachment's domain rules.
  uint16_t dns_port_first = 0;
  uint16_t dns_port_last = 0;
};

// The programs, for tests and benchmarks that run them with
// BPF_PROG_TEST_RUN.
enum class Program : uint8_t {
  kConnect4,
  kConnect6,
  kSendmsg4,
  kSendmsg6,
  kCgroupEgress,
  kCgroupIngress,
  kTcGuard,
  kTcTrack,
  kTcPacketSockets,
};

}  // namespace sebpf::datapath
