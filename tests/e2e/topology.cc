#include "topology.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>

#include "support/sockets.h"

namespace sebpf::testing {

std::string test_ranges_in_use() {
  const CommandResult r = run_command({"ip", "-o", "addr", "show"});
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    for (const char* range : {" 198.51.100.", " 203.0.113.", " 2001:db8:"}) {
      if (line.find(range) != std::string::npos) return line;
    }
  }
  return "";
}

Topology::Topology() : tag_(std::to_string(getpid() % 100000)) {
  ns_ = std::make_unique<NetNs>("sebpf-e2e-" + tag_);
  veth_ = std::make_unique<VethPair>("sebpfh" + tag_, "sebpfp" + tag_, *ns_);
  for (const char* cidr : {"198.51.100.1/24", "203.0.113.1/24", "2001:db8::1/64"}) {
    add_address("", host_if(), cidr);
  }
  for (const char* cidr : {"198.51.100.2/24", "198.51.100.3/24", "203.0.113.2/24", "2001:db8::2/64",
                           "2001:db8::3/64"}) {
    add_address(ns_->name(), peer_if(), cidr);
  }
}

Topology::~Topology() {
  peer_server_.reset();
  host_server_.reset();
  veth_.reset();
  ns_.reset();
}

void Topology::start_peer_server() {
  peer_server_ = std::make_unique<Child>([this]() -> int {
    if (!ns_->enter()) return 80;
    serve_echo(kEchoPort);
  });
  ASSERT_TRUE(run_in_peer([] {
                return wait_for_tcp("198.51.100.2", kEchoPort, std::chrono::seconds(5)) ? 0 : 1;
              }) == 0)
      << "echo server in the test namespace did not come up";
}

void Topology::start_host_server() {
  host_server_ = std::make_unique<Child>([]() -> int { serve_echo(kEchoPort); });
  ASSERT_TRUE(wait_for_tcp("127.0.0.1", kEchoPort, std::chrono::seconds(5)))
      << "echo server in the host namespace did not come up";
}

int Topology::run_in_peer(const std::function<int()>& fn) const {
  return run_in_child([&] {
    if (!ns_->enter()) return 81;
    return fn();
  });
}

}  // namespace sebpf::testing
