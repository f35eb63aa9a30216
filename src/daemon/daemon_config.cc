#include "daemon/daemon_config.h"

#include <charconv>
#include <limits>

#include "common/text_file.h"
#include "net/ip_prefix.h"
#include "policy/strict_yaml.h"

namespace sebpf::daemon {

using strict_yaml::entries;
using strict_yaml::fail;
using strict_yaml::scalar;
using strict_yaml::scalar_list;

namespace {

uint64_t number_of(const YAML::Node& node, const std::string& what, uint64_t min, uint64_t max) {
  const std::string text = scalar(node, what);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    fail(node, what + " must be a whole number from " + std::to_string(min) + " to " +
                   std::to_string(max) + ", not \"" + text + "\"");
  }
  return value;
}

bool bool_of(const YAML::Node& node, const std::string& what) {
  const std::string text = scalar(node, what);
  if (text == "true") return true;
  if (text == "false") return false;
  fail(node, what + " must be true or false, not \"" + text + "\"");
}

std::vector<uint32_t> ids_of(const YAML::Node& node, const std::string& what) {
  std::vector<uint32_t> out;
  if (node.IsNull()) return out;
  if (!node.IsSequence()) fail(node, what + " must be a list");
  for (const auto& item : node) {
    out.push_back(static_cast<uint32_t>(
        number_of(item, "an entry of " + what, 0, std::numeric_limits<uint32_t>::max() - 1)));
  }
  return out;
}

void read_socket(const YAML::Node& node, DaemonConfig& c) {
  for (const auto& [key, value] :
       entries(node, "socket", {"path", "group", "allowed_uids", "allowed_gids"})) {
    if (key == "path") c.socket_path = scalar(value, "socket.path");
    if (key == "group") c.socket_group = scalar(value, "socket.group");
    if (key == "allowed_uids") c.allowed_uids = ids_of(value, "socket.allowed_uids");
    if (key == "allowed_gids") c.allowed_gids = ids_of(value, "socket.allowed_gids");
  }
}

void read_datapath(const YAML::Node& node, DaemonConfig& daemon) {
  datapath::Config& c = daemon.datapath;
  constexpr uint64_t kMax = 1u << 24;
  // Each table is allocated whole when its attachment attaches (~112 bytes
  // an entry, two tables): a million flows is already 224 MiB each.
  constexpr uint64_t kMaxFlowsPerAttachment = 1u << 20;
  for (const auto& [key, value] :
       entries(node, "datapath",
               {"pin_dir", "max_attachments", "max_host_rules", "max_prefix_rules",
                "max_cidr_rules_per_attachment", "max_flows_per_attachment", "dhcp_request_burst",
                "dhcp_request_interval_seconds"})) {
    const std::string what = "datapath." + key;
    if (key == "pin_dir") c.pin_dir = scalar(value, what);
    if (key == "max_attachments") c.max_attachments = number_of(value, what, 1, 65536);
    if (key == "max_host_rules") c.max_host_rules = number_of(value, what, 1, kMax);
    if (key == "max_prefix_rules") c.max_prefix_rules = number_of(value, what, 1, kMax);
    if (key == "max_cidr_rules_per_attachment") {
      daemon.max_cidr_rules_per_attachment = number_of(value, what, 0, kMax);
    }
    if (key == "max_flows_per_attachment") {
      c.max_flows_per_attachment =
          number_of(value, what, datapath::kMinFlowsPerAttachment, kMaxFlowsPerAttachment);
    }
    if (key == "dhcp_request_burst") c.dhcp_request_burst = number_of(value, what, 1, 1000);
    if (key == "dhcp_request_interval_seconds") {
      c.dhcp_request_interval = std::chrono::seconds(number_of(value, what, 1, 3600));
    }
  }
}

std::vector<net::SocketAddress> upstreams_of(const YAML::Node& node, const std::string& what) {
  std::vector<net::SocketAddress> out;
  for (const std::string& text : scalar_list(node, what)) {
    auto address = net::SocketAddress::parse(text, 53);
    if (!address.ok()) fail(node, "an entry of " + what + ": " + address.error().message());
    out.push_back(*address);
  }
  return out;
}

std::vector<net::IpPrefix> prefixes_of(const YAML::Node& node, const std::string& what) {
  std::vector<net::IpPrefix> out;
  for (const std::string& text : scalar_list(node, what)) {
    auto prefix = net::IpPrefix::parse(text);
    if (!prefix.ok()) fail(node, "an entry of " + what + ": " + prefix.error().message());
    out.push_back(*prefix);
  }
  return out;
}

uint16_t rcode_of(const YAML::Node& node, const std::string& what) {
  const std::string text = scalar(node, what);
  if (text == "nxdomain") return 3;
  if (text == "refused") return 5;
  fail(node, what + " must be nxdomain or refused, not \"" + text + "\"");
}

void read_dns(const YAML::Node& node, DaemonConfig& c) {
  for (const auto& [key, value] :
       entries(node, "dns", {"port_first",          "port_last",           "cgroup_ipv4",
                             "cgroup_ipv6",         "upstreams",           "resolv_conf",
                             "upstream_timeout_ms", "min_ttl_seconds",     "max_ttl_seconds",
                             "refuse_with",         "max_inflight",        "max_qps",
                             "max_tcp_clients",     "max_upstream_qps",    "max_learned_hosts",
                             "max_domain_rules",    "never_learn",         "threads",
                             "answer_spin_us",      "receive_buffer_bytes"})) {
    const std::string what = "dns." + key;
    if (key == "upstreams") c.dns_upstreams = upstreams_of(value, what);
    if (key == "resolv_conf") c.dns_resolv_conf = scalar(value, what);
    if (key == "upstream_timeout_ms") {
      c.dns_upstream_timeout = std::chrono::milliseconds(number_of(value, what, 10, 60000));
    }
    if (key == "min_ttl_seconds") c.dns_min_ttl = number_of(value, what, 0, 604800);
    if (key == "max_ttl_seconds") c.dns_max_ttl = number_of(value, what, 1, 604800);
    if (key == "refuse_with") c.dns_refusal_rcode = rcode_of(value, what);
    if (key == "max_inflight") c.dns_max_inflight = number_of(value, what, 1, 1u << 20);
    if (key == "max_qps") c.dns_max_qps = number_of(value, what, 0, 1u << 24);
    if (key == "max_tcp_clients") c.dns_max_tcp_clients = number_of(value, what, 1, 65536);
    if (key == "receive_buffer_bytes") {
      c.dns_receive_buffer_bytes = number_of(value, what, 0, 1u << 28);
      if (c.dns_receive_buffer_bytes != 0 && c.dns_receive_buffer_bytes < 4096) {
        fail(value, what + " must be 0 (the kernel's default) or at least 4096");
      }
    }
    if (key == "max_upstream_qps") c.dns_max_upstream_qps = number_of(value, what, 0, 1u << 24);
    if (key == "max_learned_hosts") c.dns_max_learned_hosts = number_of(value, what, 1, 1u << 24);
    if (key == "max_domain_rules") c.dns_max_domain_rules = number_of(value, what, 1, 1u << 20);
    if (key == "never_learn") c.dns_never_learn = prefixes_of(value, what);
    if (key == "threads") c.dns_threads = number_of(value, what, 0, 64);
    if (key == "answer_spin_us") {
      c.dns_answer_spin = std::chrono::microseconds(number_of(value, what, 0, 1000));
    }
    if (key == "port_first") c.dns_port_first = number_of(value, what, 1, 65535);
    if (key == "port_last") c.dns_port_last = number_of(value, what, 1, 65535);
    if (key == "cgroup_ipv4") c.dns_cgroup_ipv4 = scalar(value, what);
    if (key == "cgroup_ipv6") c.dns_cgroup_ipv6 = scalar(value, what);
  }
}

void read_root(const YAML::Node& root, DaemonConfig& c) {
  if (!root.IsDefined() || root.IsNull()) return;  // an empty file changes nothing
  for (const auto& [key, value] :
       entries(root, "the config file",
               {"socket", "state_dir", "policy_file", "detach_on_exit", "log_level", "datapath",
                "dns", "sweep_interval_seconds"})) {
    if (key == "socket") read_socket(value, c);
    if (key == "state_dir") c.state_dir = scalar(value, key);
    if (key == "policy_file") c.policy_file = scalar(value, key);
    if (key == "detach_on_exit") c.detach_on_exit = bool_of(value, key);
    if (key == "log_level") {
      auto level = parse_log_level(scalar(value, key));
      if (!level.ok()) fail(value, level.error().message());
      c.log_level = *level;
    }
    if (key == "datapath") read_datapath(value, c);
    if (key == "dns") read_dns(value, c);
    if (key == "sweep_interval_seconds") {
      c.sweep_interval = std::chrono::seconds(number_of(value, key, 1, 86400));
    }
  }
}

}  // namespace

Result<LogLevel> parse_log_level(std::string_view text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warning") return LogLevel::kWarning;
  if (text == "error") return LogLevel::kError;
  return Error(Errc::kInvalidArgument, "log_level must be debug, info, warning or error, not \"" +
                                           std::string(text) + "\"");
}

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

Status parse_daemon_config(std::string_view yaml, DaemonConfig& config) {
  DaemonConfig parsed = config;
  SEBPF_RETURN_IF_ERROR(strict_yaml::parse_strict_yaml(
      yaml, "config file", [&](const YAML::Node& root) { read_root(root, parsed); }));
  config = std::move(parsed);
  return ok_status();
}

Status load_daemon_config(const std::string& path, DaemonConfig& config) {
  SEBPF_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "config file"));
  auto status = parse_daemon_config(text, config);
  if (!status.ok()) return status.error().wrap(path);
  return ok_status();
}

Status validate_daemon_config(const DaemonConfig& c) {
  auto absolute = [](const std::string& path, const char* what) -> Status {
    if (path.empty() || path.front() != '/') {
      return Error(Errc::kInvalidArgument,
                   std::string(what) + " must be an absolute path, not \"" + path + "\"");
    }
    return ok_status();
  };
  SEBPF_RETURN_IF_ERROR(absolute(c.socket_path, "socket.path"));
  SEBPF_RETURN_IF_ERROR(absolute(c.state_dir, "state_dir"));
  SEBPF_RETURN_IF_ERROR(absolute(c.datapath.pin_dir, "datapath.pin_dir"));
  if (!c.policy_file.empty()) SEBPF_RETURN_IF_ERROR(absolute(c.policy_file, "policy_file"));
  if (c.dns_port_first > c.dns_port_last) {
    return Error(Errc::kInvalidArgument, "dns.port_first (" + std::to_string(c.dns_port_first) +
                                             ") is above dns.port_last (" +
                                             std::to_string(c.dns_port_last) + ")");
  }
  if (c.dns_min_ttl > c.dns_max_ttl) {
    return Error(Errc::kInvalidArgument, "dns.min_ttl_seconds (" + std::to_string(c.dns_min_ttl) +
                                             ") is above dns.max_ttl_seconds (" +
                                             std::to_string(c.dns_max_ttl) + ")");
  }
  if (c.dns_upstreams.empty())
    SEBPF_RETURN_IF_ERROR(absolute(c.dns_resolv_conf, "dns.resolv_conf"));
  auto v4 = net::IpAddress::parse(c.dns_cgroup_ipv4);
  if (!v4.ok() || v4->family() != net::Family::kIPv4) {
    return Error(Errc::kInvalidArgument,
                 "dns.cgroup_ipv4 must be an IPv4 address, not \"" + c.dns_cgroup_ipv4 + "\"");
  }
  auto v6 = net::IpAddress::parse(c.dns_cgroup_ipv6);
  if (!v6.ok() || v6->family() != net::Family::kIPv6) {
    return Error(Errc::kInvalidArgument,
                 "dns.cgroup_ipv6 must be an IPv6 address, not \"" + c.dns_cgroup_ipv6 + "\"");
  }
  return ok_status();
}

}  // namespace sebpf::daemon
