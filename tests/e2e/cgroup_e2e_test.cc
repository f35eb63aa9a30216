// A real cgroup holding real processes whose test hosts live in a network
// namespace: TCP, UDP, ICMP and IPv6 allowed or refused per mode, as the
// application sees it (EPERM at connect/sendto time, or nothing arriving).
#include <unistd.h>

#include <thread>

#include "e2e_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::Mode;

class CgroupE2eTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped()) return;
    start_servers_and_open();
  }

  datapath::AttachmentKey attach(Mode mode, const std::vector<datapath::Rule>& rules = {}) {
    auto att = dp_->attach_cgroup(cgroup_->path(), {.mode = mode, .dns = {}, .direction = {}, .rules = {}});
    EXPECT_TRUE(att.ok()) << att.error().message();
    if (!att.ok()) return {};
    EXPECT_TRUE(dp_->replace_policy(att->key, mode, rules).ok());
    return att->key;
  }
};

TEST_F(CgroupE2eTest, AllowlistLetsOnlyListedHostsThrough) {
  attach(Mode::kAllowlist,
         {make_rule("198.51.100.2", Action::kAllow), make_rule("2001:db8::2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.2", kEchoPort, false); }), 0);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.3", kEchoPort, false); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.3", kEchoPort, true); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("198.51.100.2"); }), 0);
  EXPECT_NE(in_cgroup([] { return ping("198.51.100.3"); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("2001:db8::3", kEchoPort, false); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("2001:db8::2"); }), 0);
  EXPECT_NE(in_cgroup([] { return ping("2001:db8::3"); }), 0);
  // Loopback is always allowed.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::1", kEchoPort); }), 0);
}

TEST_F(CgroupE2eTest, V4MappedAddressesAreJudgedAsIpv4) {
  attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::ffff:198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::ffff:198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("::ffff:198.51.100.3", kEchoPort, false); }), EPERM);
}

TEST_F(CgroupE2eTest, DenylistRefusesOnlyDeniedHosts) {
  attach(Mode::kDenylist,
         {make_rule("198.51.100.3", Action::kDeny), make_rule("2001:db8::3", Action::kDeny)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("203.0.113.2", kEchoPort, false); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("2001:db8::2"); }), 0);
}

TEST_F(CgroupE2eTest, BlockAllLeavesOnlyLoopback) {
  attach(Mode::kBlockAll, {make_rule("0.0.0.0/0", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("203.0.113.2", kEchoPort, false); }), EPERM);
  EXPECT_NE(in_cgroup([] { return ping("198.51.100.2"); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), 0);
}

TEST_F(CgroupE2eTest, DisabledEnforcesNothing) {
  attach(Mode::kDisabled, {make_rule("0.0.0.0/0", Action::kDeny)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return ping("198.51.100.3"); }), 0);
}

TEST_F(CgroupE2eTest, ProcessesInNestedCgroupsAreCovered) {
  attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  TestCgroup nested("sebpf-e2e-" + topo_->tag() + "/inner");
  const int r = run_in_child([&] {
    if (!nested.add_self()) return 82;
    if (tcp_echo("198.51.100.2", kEchoPort) != 0) return 1;
    return tcp_echo("198.51.100.3", kEchoPort) == EPERM ? 0 : 2;
  });
  EXPECT_EQ(r, 0);
}

TEST_F(CgroupE2eTest, LiveConnectionIsCutWhenItsDestinationBecomesDenied) {
  const auto key = attach(Mode::kAllowlist, {make_rule("198.51.100.0/24", Action::kAllow)});
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  Child client([&] {
    if (!cgroup_->add_self()) return 82;
    TcpClient c;
    if (c.connect("198.51.100.2", kEchoPort) != 0 || c.echo() != 0) return 1;
    char go = 'r';
    if (write(to_parent[1], &go, 1) != 1 || read(to_child[0], &go, 1) != 1) return 2;
    // The connection is established; its packets must now be dropped.
    return c.echo() != 0 ? 0 : 3;
  });
  char ready = 0;
  ASSERT_EQ(read(to_parent[0], &ready, 1), 1);
  ok(dp_->add_rule(key, make_rule("198.51.100.2", Action::kDeny)));
  ASSERT_EQ(write(to_child[1], &ready, 1), 1);
  EXPECT_EQ(client.wait(), 0) << "the echo still came back after the deny rule";
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
}

TEST_F(CgroupE2eTest, InboundConnectionsGetTheirRepliesThroughAnAllowlist) {
  attach(Mode::kAllowlist);
  // A server inside the workload cgroup; a client in the test namespace.
  Child server([&]() -> int {
    if (!cgroup_->add_self()) return 82;
    serve_echo(kEchoPort + 1);
  });
  EXPECT_EQ(topo_->run_in_peer([] {
    return wait_for_tcp("198.51.100.1", kEchoPort + 1, std::chrono::seconds(5)) ? 0 : 1;
  }),
            0);
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort + 1); }), 0);
  EXPECT_EQ(topo_->run_in_peer([] { return udp_echo("198.51.100.1", kEchoPort + 1, false); }), 0);
  // But the workload itself still cannot open anything.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
}

TEST_F(CgroupE2eTest, CountersShowConnectsAndPacketsByReason) {
  const auto key = attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  auto c = dp_->counters(key);
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->get(SEBPF_HOOK_SOCKET, SEBPF_REASON_ALLOW_RULE), 1U);
  EXPECT_EQ(c->get(SEBPF_HOOK_SOCKET, SEBPF_REASON_DENY_DEFAULT), 1U);
  EXPECT_GE(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_ALLOW_RULE), 2U);  // SYN, data, ...
}

}  // namespace
}  // namespace sebpf::testing
