// Shared set-up of the end-to-end tests: privileges, the topology, a
// private or pinned datapath, and a cgroup whose processes are the
// workload.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "datapath/datapath.h"
#include "support/cgroup.h"
#include "support/privileges.h"
#include "support/sockets.h"
#include "topology.h"

namespace sebpf::testing {

inline datapath::Rule make_rule(const std::string& cidr, datapath::Action action) {
  return {*net::IpPrefix::parse(cidr), action, std::nullopt};
}

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SEBPF_REQUIRE_PRIVILEGES();
    const std::string in_use = test_ranges_in_use();
    ASSERT_TRUE(in_use.empty()) << "the test address ranges are already in use on this host, "
                                   "so test traffic could leave it: "
                                << in_use;
    topo_ = std::make_unique<Topology>();
    cgroup_ = std::make_unique<TestCgroup>("sebpf-e2e-" + topo_->tag());
  }
  void TearDown() override {
    dp_.reset();
    cgroup_.reset();
    topo_.reset();
  }

  // Echo servers on both sides and a private datapath: what traffic tests
  // start from.
  void start_servers_and_open() {
    topo_->start_peer_server();
    topo_->start_host_server();
    open_private();
  }

  void open_private() {
    datapath::Config config;
    config.pin_dir = "";
    auto dp = datapath::Datapath::open(config);
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    dp_ = std::move(*dp);
  }

  // Runs fn as a process of the workload cgroup; its return is the result.
  int in_cgroup(const std::function<int()>& fn) {
    return run_in_child([&] {
      if (!cgroup_->add_self()) return 82;
      return fn();
    });
  }

  void ok(const Status& s) { ASSERT_TRUE(s.ok()) << s.error().message(); }

  std::unique_ptr<Topology> topo_;
  std::unique_ptr<TestCgroup> cgroup_;
  std::unique_ptr<datapath::Datapath> dp_;
};

}  // namespace sebpf::testing
