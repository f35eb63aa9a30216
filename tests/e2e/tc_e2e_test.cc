// The TC filter on the host side of a veth, with the namespace as the guest
// (a VM or container behind its tap/veth): its outgoing traffic is allowed
// or dropped per mode, the link keeps working, inbound connections work.
#include <net/if.h>

#include <cerrno>
#include <cstdlib>

#include "e2e_fixture.h"
#include "foreign_programs.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::Mode;
using std::chrono::milliseconds;

class TcE2eTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    start_servers_and_open();
  }

  datapath::AttachmentKey attach(
      Mode mode, const std::vector<datapath::Rule>& rules,
      datapath::TcDirection direction = datapath::TcDirection::kIngress) {
    auto att = dp_->attach_interface(
        topo_->host_if(), {.mode = mode, .dns = {}, .direction = direction, .rules = {}});
    EXPECT_TRUE(att.ok()) << att.error().message();
    if (!att.ok()) return {};
    EXPECT_TRUE(dp_->replace_policy(att->key, mode, rules).ok());
    return att->key;
  }

  // What the guest gets when it talks to a host-side address.
  int guest(const std::function<int()>& fn) { return topo_->run_in_peer(fn); }
};

TEST_F(TcE2eTest, AllowlistDropsWhatIsNotListed) {
  attach(Mode::kAllowlist, {make_rule("198.51.100.1", Action::kAllow)});
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(guest([] { return udp_echo("198.51.100.1", kEchoPort, false); }), 0);
  EXPECT_EQ(guest([] { return ping("198.51.100.1"); }), 0);
  EXPECT_EQ(guest([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); }), ETIMEDOUT);
  EXPECT_EQ(guest([] { return udp_echo("203.0.113.1", kEchoPort, false, milliseconds(700)); }),
            ETIMEDOUT);
  EXPECT_NE(guest([] { return ping("203.0.113.1"); }), 0);
  EXPECT_EQ(guest([] { return tcp_echo("2001:db8::1", kEchoPort, milliseconds(700)); }), ETIMEDOUT);
}

TEST_F(TcE2eTest, Ipv6WorksOnceAllowedBecauseNeighbourDiscoveryPasses) {
  attach(Mode::kAllowlist, {make_rule("2001:db8::1", Action::kAllow)});
  EXPECT_EQ(guest([] { return tcp_echo("2001:db8::1", kEchoPort); }), 0);
  EXPECT_EQ(guest([] { return udp_echo("2001:db8::1", kEchoPort, false); }), 0);
  EXPECT_EQ(guest([] { return ping("2001:db8::1"); }), 0);
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);
}

TEST_F(TcE2eTest, DenylistAndBlockAll) {
  const auto key = attach(Mode::kDenylist, {make_rule("203.0.113.0/24", Action::kDeny)});
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(guest([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); }), ETIMEDOUT);
  ok(dp_->set_mode(key, Mode::kBlockAll));
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);
  ok(dp_->set_mode(key, Mode::kDisabled));
  EXPECT_EQ(guest([] { return tcp_echo("203.0.113.1", kEchoPort); }), 0);
}

// A real DHCP exchange through the guard in block_all mode: the guest's
// client (BusyBox udhcpc) gets a lease from a server on the host side
// (dnsmasq), so a real client's DISCOVER and REQUEST pass the payload
// check that keeps other data out of the DHCP allowance.
TEST_F(TcE2eTest, AGuestsDhcpClientGetsALeaseWhateverTheMode) {
  attach(Mode::kBlockAll, {});
  const std::string interface = "--interface=" + topo_->host_if();
  Child server([&] {
    execlp("dnsmasq", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
           interface.c_str(), "--bind-interfaces", "--leasefile-ro", "--pid-file=", "--user=root",
           "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,2m", "--no-ping",
           static_cast<char*>(nullptr));
    return 127;
  });
  const std::string peer_if = topo_->peer_if();
  // -n: fail rather than go to the background without a lease; the
  // script does nothing, so the guest's addresses stay as they are.
  // -t 5: a DISCOVER sent while the server is still starting goes
  // unanswered; five of them plus the REQUEST are the six requests the
  // guard lets through at once in block_all (dhcp_request_burst). The
  // server's --no-ping: by default dnsmasq pings an address for about
  // three seconds before it offers it, which used up most of the client's
  // tries (four tries failed once on CI).
  EXPECT_EQ(topo_->run_in_peer([&] {
    execlp("udhcpc", "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", peer_if.c_str(), "-s",
           "/bin/true", static_cast<char*>(nullptr));
    return 127;
  }),
            0)
      << "no lease: the guard dropped the client's DHCP messages";
}

TEST_F(TcE2eTest, HostCanStillConnectIntoTheGuest) {
  attach(Mode::kAllowlist, {});
  // The guest's server answers though the guest may open nothing itself.
  EXPECT_EQ(tcp_echo("198.51.100.2", kEchoPort), 0);
  EXPECT_EQ(udp_echo("198.51.100.2", kEchoPort, false), 0);
  EXPECT_EQ(ping("198.51.100.2"), 0);
  EXPECT_EQ(tcp_echo("2001:db8::2", kEchoPort), 0);
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);
}

TEST_F(TcE2eTest, GuardOnTheEgressHookWhenConfigured) {
  // Here the host namespace plays the workload: its traffic leaves through
  // the host-side veth's egress hook.
  attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)},
         datapath::TcDirection::kEgress);
  EXPECT_EQ(tcp_echo("198.51.100.2", kEchoPort), 0);
  EXPECT_EQ(tcp_echo("198.51.100.3", kEchoPort, milliseconds(700)), ETIMEDOUT);
}

// A detach leaves the interface as it was: traffic flows, and neither our
// filters nor the clsact qdisc made for them are left on it.
TEST_F(TcE2eTest, DetachRestoresTraffic) {
  const auto key = attach(Mode::kBlockAll, {});
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);
  const auto qdiscs = [&] { return run_command({"tc", "qdisc", "show", "dev", topo_->host_if()}); };
  ASSERT_NE(qdiscs().output.find("clsact"), std::string::npos);
  ok(dp_->detach(key));
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(qdiscs().output.find("clsact"), std::string::npos) << qdiscs().output;
}

// What a daemon's watcher finds when told that an attached interface's
// filters changed. Another program in our filter's place lets the guest
// through, and is replaced by ours; so does another program's filter added
// ahead of ours, and ours goes first again. Another superebpfd's filter in
// our place (here a second datapath, as a second daemon would open) is
// left alone: two daemons that each put theirs back would do so without
// end.
TEST_F(TcE2eTest, AnotherProgramInOurFiltersPlaceOrAheadOfItIsUndoneUnlessItIsAnotherDaemons) {
  const auto key = attach(Mode::kBlockAll, {});
  // The hooks put back, and what each held instead.
  const auto restore = [&]() -> std::string {
    auto restored = dp_->restore_interface_filters(key);
    EXPECT_TRUE(restored.ok()) << restored.error().message();
    if (!restored.ok()) return "(failed)";
    return restored->empty() ? "" : restored->hooks + " " + restored->found;
  };
  EXPECT_EQ(restore(), "") << "ours are in place";

  datapath::Config config;
  config.pin_dir = "";
  auto second = datapath::Datapath::open(config);
  ASSERT_TRUE(second.ok()) << second.error().message();
  ASSERT_TRUE(
      (*second)
          ->attach_interface(topo_->host_if(), {.mode = Mode::kDisabled,
                                                .dns = {},
                                                .direction = datapath::TcDirection::kIngress,
                                                .rules = {}})
          .ok());
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(restore(), "") << "fought another daemon's filters";
  second->reset();  // without pins, its filters go with it
  EXPECT_EQ(restore(), "ingress,egress missing,missing");
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);

  put_pass_all_filter(topo_->host_if(), BPF_TC_INGRESS, config.tc_handle);
  ASSERT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0)
      << "the pass-all program did not take the guard's place";
  EXPECT_EQ(restore(), "ingress replaced");
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);

  constexpr uint32_t kTheirHandle = 7;
  put_pass_all_filter(topo_->host_if(), BPF_TC_INGRESS, kTheirHandle);
  ASSERT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0)
      << "the pass-all filter did not run before the guard";
  EXPECT_EQ(restore(), "ingress behind_another");
  EXPECT_EQ(guest([] { return tcp_echo("198.51.100.1", kEchoPort, milliseconds(700)); }),
            ETIMEDOUT);
  EXPECT_EQ(restore(), "") << "ours is first";
  EXPECT_NE(run_command({"tc", "filter", "show", "dev", topo_->host_if(), "ingress"})
                .output.find("other_pass_all"),
            std::string::npos)
      << "another program's filter was taken away";
}

// In the guest's namespace, what a workload holding CAP_NET_ADMIN there can
// do: route an allowed address (198.51.100.1) into a veth pair of its own,
// rewrite the destination to 203.0.113.1 where the pair's far end receives
// it, and forward it out of the namespace. "notrack" on output: the packet
// must meet the DNAT as a new flow when it comes back in.
int reroute_allowed_to_denied() {
  return std::system(R"sh(set -e
    ip link add sebpf-va type veth peer name sebpf-vb
    ip link set sebpf-va up; ip link set sebpf-vb up
    sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
      net.ipv4.conf.sebpf-va.rp_filter=0 net.ipv4.conf.sebpf-va.accept_local=1
    ip route add 198.51.100.1/32 dev sebpf-vb src 198.51.100.2
    mac=$(ip -o link show sebpf-va | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')
    ip neigh add 198.51.100.1 lladdr "$mac" dev sebpf-vb
    nft -f - <<EOF
table ip sebpf-test {
  chain out { type filter hook output priority raw; notrack; }
  chain pre { type nat hook prerouting priority dstnat; iif "sebpf-va" ip daddr 198.51.100.1 dnat to 203.0.113.1; }
}
EOF
  )sh");
}

// A container that may reconfigure its own network namespace
// (CAP_NET_ADMIN) gets a packet for a denied host past its cgroup's
// programs: it sends to an allowed address, and rewrites and forwards the
// packet inside its namespace, where it belongs to no socket and no cgroup
// program runs. The remedy the daemon's warning names, the guard on the
// host side of the container's interface, sees the packet as it leaves.
TEST_F(TcE2eTest, ForwardingPastTheCgroupProgramsIsStoppedByTheInterfaceGuard) {
  constexpr uint16_t kPort = kEchoPort + 5;
  const UniqueFd rx = udp_listener("203.0.113.1", kPort);
  ASSERT_TRUE(rx.valid());
  const auto received = [](int fd) { return datagram_arrives(fd, milliseconds(500)); };

  auto cgroup = dp_->attach_cgroup(cgroup_->path(), {.mode = Mode::kAllowlist,
                                                     .dns = {},
                                                     .direction = datapath::TcDirection::kIngress,
                                                     .rules = {}});
  ASSERT_TRUE(cgroup.ok()) << cgroup.error().message();
  const std::vector<datapath::Rule> allow_one = {make_rule("198.51.100.1", Action::kAllow)};
  ok(dp_->replace_policy(cgroup->key, Mode::kAllowlist, allow_one));
  const auto container = [&](const std::function<int()>& fn) {
    return guest([&] { return cgroup_->add_self() ? fn() : 82; });
  };
  ASSERT_EQ(container([] { return send_datagram("203.0.113.1", kPort); }), EPERM);
  ASSERT_EQ(container(reroute_allowed_to_denied), 0) << "could not set up the namespace";
  ASSERT_EQ(container([] { return send_datagram("198.51.100.1", kPort); }), 0);
  ASSERT_TRUE(received(rx.get()))
      << "the rerouted datagram did not arrive even without the interface guard, so this test "
         "shows nothing";

  const auto key = attach(Mode::kAllowlist, allow_one);
  ASSERT_EQ(container([] { return send_datagram("198.51.100.1", kPort); }), 0);
  EXPECT_FALSE(received(rx.get())) << "the interface guard let the rerouted datagram out";
  auto c = dp_->counters(key);
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_DENY_DEFAULT), 1U);
}

// An interface being deleted loses its filters as it goes, and the events
// of that make the daemon look at it: the look may find it there, and gone
// by the time it attaches. A gone interface lacks nothing, so no error.
// (A race: looking throughout many deletions makes it likely.)
TEST_F(TcE2eTest, AnInterfaceDeletedDuringALookAtItsFiltersLacksNothing) {
  const std::string host = "sebpfz" + topo_->tag();
  int looks = 0;
  for (int round = 0; round < 40 && !HasFailure(); ++round) {
    must_run({"ip", "link", "add", host, "type", "veth", "peer", "name", host + "p"});
    auto att = dp_->attach_interface(
        host, {.mode = Mode::kBlockAll, .dns = {}, .direction = {}, .rules = {}});
    ASSERT_TRUE(att.ok()) << att.error().message();
    Child deleter([&] { return run_command({"ip", "link", "del", host}).exit_code; });
    while (if_nametoindex(host.c_str()) != 0) {
      auto restored = dp_->restore_interface_filters(att->key);
      EXPECT_TRUE(restored.ok()) << "round " << round << ": " << restored.error().message();
      ++looks;
    }
    EXPECT_EQ(deleter.wait(), 0);
    ok(dp_->detach(att->key));
  }
  RecordProperty("looks", looks);
}

}  // namespace
}  // namespace sebpf::testing
