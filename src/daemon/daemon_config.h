// superebpfd's configuration: a YAML file (docs/configuration.md lists
// every key) whose values command-line flags override. Strict like the
// policy file: an unknown key or a bad value is an error naming the line.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "daemon/never_learn.h"
#include "daemon/policy_model.h"
#include "datapath/types.h"
#include "net/socket_address.h"

namespace sebpf::daemon {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarning, kError };
Result<LogLevel> parse_log_level(std::string_view text);
std::string_view log_level_name(LogLevel level);

struct DaemonConfig {
  // The API socket: mode 0660, owned by root and `socket_group`.
  std::string socket_path = "/run/superebpf/superebpfd.sock";
  std::string socket_group;  // name or number; empty: root's group
  // Callers the API trusts, by SO_PEERCRED uid or primary gid. Root is
  // always trusted.
  std::vector<uint32_t> allowed_uids;
  std::vector<uint32_t> allowed_gids;

  std::string state_dir = "/var/lib/superebpf";
  // Metadata selectors -> policy for new attachments (policy/policy_file.h).
  // Empty: every attachment starts with the built-in fail-closed policy.
  std::string policy_file;
  // On a clean stop, detach everything (enforcement ends). By default
  // enforcement stays in the kernel and the next start adopts it.
  bool detach_on_exit = false;
  LogLevel log_level = LogLevel::kInfo;

  datapath::Config datapath;
  // datapath.max_cidr_rules_per_attachment: CIDR rules (allow and deny,
  // both families) per attachment, held to it as domain rules are; 0: no
  // cap. The kernel's rule tables are shared by all attachments, so
  // without a cap one attachment may take the room the others' next rules
  // need.
  uint32_t max_cidr_rules_per_attachment = 0;

  // DNS endpoints: every attachment gets its own port in this range (kept
  // below the kernel's default ephemeral range so no outgoing connection
  // can hold one). Cgroup attachments in the host's network namespace get
  // these loopback addresses; interface attachments the host side's own.
  uint16_t dns_port_first = 20000;
  uint16_t dns_port_last = 29999;
  std::string dns_cgroup_ipv4 = "127.0.0.1";
  std::string dns_cgroup_ipv6 = "::1";
  // Where allowed queries go, in order (failover). Empty: the nameserver
  // lines of dns_resolv_conf, read at start.
  std::vector<net::SocketAddress> dns_upstreams;
  std::string dns_resolv_conf = "/etc/resolv.conf";
  std::chrono::milliseconds dns_upstream_timeout{1500};
  // Learned addresses are allowed for the answer's TTL clamped to these;
  // answers reach clients with TTLs lowered to the maximum.
  uint32_t dns_min_ttl = 30;
  uint32_t dns_max_ttl = 3600;
  // The answer to a refused query: NXDOMAIN (3) or REFUSED (5).
  uint16_t dns_refusal_rcode = 3;
  // Per endpoint: queries waiting for an upstream, queries per second (0:
  // no limit), concurrent TCP clients.
  uint32_t dns_max_inflight = 512;
  uint32_t dns_max_qps = 5000;
  uint32_t dns_max_tcp_clients = 64;
  // Per endpoint UDP socket: bytes of datagrams the kernel holds while no
  // thread reads (ProxyConfig::receive_buffer_bytes); 0: the kernel's
  // default.
  uint32_t dns_receive_buffer_bytes = 2u << 20;
  // Queries a second to the upstreams from all endpoints together, shared
  // fairly among them (dns/upstream_budget.h); 0: no limit.
  uint32_t dns_max_upstream_qps = 0;
  // Per attachment: hosts learned from answers and not expired. The
  // learned-host table is shared, and split on top of this cap
  // (learned_share.h), so one workload resolving without end cannot take
  // it from the rest.
  uint32_t dns_max_learned_hosts = 16384;
  // Per attachment: domain rules. Each costs memory in the daemon and
  // bytes in the state file, which every policy change writes whole, so
  // no caller may grow them without end. Changes that would go past it are
  // refused (RESOURCE_EXHAUSTED); an attachment already past it, after the
  // cap was lowered, keeps its rules and may only shed them.
  uint32_t dns_max_domain_rules = 16384;
  // Answers naming addresses in these ranges are released, but the
  // addresses are not learned: only an explicit CIDR rule opens them.
  std::vector<net::IpPrefix> dns_never_learn = default_never_learn();
  // Threads serving the DNS endpoints; 0: one per CPU, at most 4.
  uint32_t dns_threads = 0;
  // How long a DNS thread polls for answers before it sleeps
  // (ProxyConfig::answer_spin).
  std::chrono::microseconds dns_answer_spin{50};

  // How often expired rules are reclaimed (the kernel ignores them at once;
  // this only frees memory).
  std::chrono::seconds sweep_interval{60};

  PolicyLimits policy_limits() const {
    return {dns_max_domain_rules, max_cidr_rules_per_attachment};
  }
  std::string state_file() const { return state_dir + "/state.pb"; }
  // What taught the learned hosts, as of the last sweep after learning or
  // the last clean stop (daemon/teaching_chains_file.h).
  std::string learned_chains_file() const { return state_dir + "/learned-chains.pb"; }
};

// Applies the keys in `yaml` on top of `config`.
Status parse_daemon_config(std::string_view yaml, DaemonConfig& config);
Status load_daemon_config(const std::string& path, DaemonConfig& config);
// Checks what depends on several keys (port range order, absolute paths).
Status validate_daemon_config(const DaemonConfig& config);

}  // namespace sebpf::daemon
