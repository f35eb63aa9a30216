#include "daemon_e2e_helpers.h"

#include "support/process.h"
#include "support/sockets.h"

namespace sebpf::testing {

std::chrono::system_clock::time_point soon() {
  return std::chrono::system_clock::now() + std::chrono::seconds(10);
}

std::vector<std::string> in_netns(const NetNs& ns, std::vector<std::string> command) {
  command.insert(command.begin(), {"ip", "netns", "exec", ns.name()});
  return command;
}

bool carries_packet_socket_filter(const std::string& dev, const NetNs* ns) {
  std::vector<std::string> command = {"tc", "filter", "show", "dev", dev, "egress"};
  if (ns != nullptr) command = in_netns(*ns, std::move(command));
  return run_command(command).output.find("sebpf_tc_packet") != std::string::npos;
}

bool carries_interface_filters(const std::string& dev) {
  return run_command({"tc", "filter", "show", "dev", dev, "ingress"})
                 .output.find("sebpf_tc_guard") != std::string::npos &&
         run_command({"tc", "filter", "show", "dev", dev, "egress"})
                 .output.find("sebpf_tc_track") != std::string::npos;
}

void enforce_nothing(v1::AttachRequest& req) {
  req.mutable_policy()->set_mode(v1::MODE_DISABLED);
  req.mutable_policy()->set_dns_mode(v1::MODE_DISABLED);
}

v1::AttachRequest interface_enforcing_nothing(const std::string& name) {
  v1::AttachRequest req;
  req.set_interface_name(name);
  enforce_nothing(req);
  return req;
}

v1::AttachRequest interface_allowing_the_host(const std::string& name) {
  v1::AttachRequest req;
  req.set_interface_name(name);
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.1/32"});
  return req;
}

int guest_reaches_denied_host(const Topology& topo) {
  return topo.run_in_peer(
      [] { return tcp_echo("203.0.113.1", kEchoPort, std::chrono::milliseconds(700)); });
}

}  // namespace sebpf::testing
