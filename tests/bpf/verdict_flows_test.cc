// Flows in the packet programs' decision, TC and cgroup_skb alike: replies
// on flows the outside opened, connections and UDP flows the workload
// opened under a learned allow outliving its TTL, reply fragments, idle
// timeouts.
#include <chrono>
#include <thread>
#include <vector>

#include "program_fixture.h"
#include "verdict_packets.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;

class FlowVerdictTest : public ProgramTest {};

// A TCP connection the workload opened to an address learned from DNS
// outlives the address's TTL (an idle connection to a CDN is not cut), and
// only that connection: a new one is refused, and an RST ends it.
TEST_P(FlowVerdictTest, AConnectionOpenedUnderALearnedAllowOutlivesItsTtl) {
  set_mode(Mode::kAllowlist);
  const datapath::Rule learned = {*net::IpPrefix::parse("198.51.100.80"), datapath::Action::kAllow,
                                  datapath::BootClock::now() + std::chrono::milliseconds(600),
                                  /*learned=*/true};
  ASSERT_TRUE(dp_->add_rule(key_, learned).ok());
  PacketSpec syn = tcp4("198.51.100.80");
  PacketSpec other_syn = syn;
  other_syn.sport = 40001;
  EXPECT_TRUE(out(syn));
  EXPECT_TRUE(out(other_syn));
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  PacketSpec data = syn;
  data.tcp_flags = 0x18;  // PSH ACK
  EXPECT_TRUE(out(data)) << "the open connection goes on";
  PacketSpec fresh = syn;
  fresh.sport = 40002;
  EXPECT_FALSE(out(fresh)) << "a new connection after the TTL is refused";
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_KEPT_CONNECTION), 1U);
  PacketSpec rst = syn;
  rst.tcp_flags = 0x04;
  EXPECT_TRUE(out(rst));
  EXPECT_FALSE(out(data)) << "an RST ends it";
  PacketSpec fin = other_syn;
  fin.tcp_flags = 0x11;  // FIN ACK: what is left of the close may pass
  EXPECT_TRUE(out(fin));
  other_syn.tcp_flags = 0x10;
  EXPECT_TRUE(out(other_syn));

  // An explicit deny still cuts such a connection.
  deny("198.51.100.80");
  EXPECT_FALSE(out(other_syn));
}

// A learned host taken back because a name that taught it is now refused:
// the daemon forgets the connections opened under it, in every form the
// programs key them (IPv4, IPv4 through NAT64, IPv6), and only those.
TEST_P(FlowVerdictTest, ForgottenLearnedConnectionsEndAtTheirNextPacket) {
  set_mode(Mode::kAllowlist);
  const auto later = datapath::BootClock::now() + std::chrono::seconds(60);
  for (const char* host : {"198.51.100.81", "2001:db8::81", "198.51.100.82"}) {
    ASSERT_TRUE(dp_->add_rule(key_, {*net::IpPrefix::parse(host), datapath::Action::kAllow, later,
                                     /*learned=*/true})
                    .ok());
  }
  const PacketSpec v4 = tcp4("198.51.100.81");
  const PacketSpec nat64 = tcp6("64:ff9b::c633:6451");  // 198.51.100.81
  const PacketSpec v6 = tcp6("2001:db8::81");
  const PacketSpec other = tcp4("198.51.100.82");
  for (const PacketSpec& syn : {v4, nat64, v6, other}) EXPECT_TRUE(out(syn)) << syn.dst;
  for (const char* host : {"198.51.100.81", "2001:db8::81", "198.51.100.82"}) {
    ASSERT_TRUE(dp_->remove_rule(key_, *net::IpPrefix::parse(host), datapath::Action::kAllow).ok());
  }
  const std::vector<net::IpAddress> taken_back = {*net::IpAddress::parse("198.51.100.81"),
                                                  *net::IpAddress::parse("2001:db8::81")};
  auto forgotten = dp_->forget_learned_connections(key_, taken_back);
  ASSERT_TRUE(forgotten.ok()) << forgotten.error().message();
  EXPECT_EQ(*forgotten, 3U);
  for (PacketSpec data : {v4, nat64, v6, other}) {
    data.tcp_flags = 0x18;  // PSH ACK
    EXPECT_EQ(out(data), data.dst == other.dst) << data.dst;
  }
}

// A UDP flow the workload opened ends with the allow that let it open:
// the peer's answers open no inbound flow on which the workload's datagrams
// would be replies, however long the peer goes on sending.
TEST_P(FlowVerdictTest, AUdpFlowTheWorkloadOpenedEndsWithTheAllowThatOpenedIt) {
  set_mode(Mode::kAllowlist);
  for (const PacketSpec& sent : {udp4("198.51.100.60"), udp6("2001:db8::60")}) {
    allow(sent.dst);
    EXPECT_TRUE(out(sent)) << sent.dst;
    in(answer_to(sent));
    EXPECT_TRUE(out(sent)) << sent.dst;
    ASSERT_TRUE(dp_->remove_rule(key_, *net::IpPrefix::parse(sent.dst)).ok());
    EXPECT_FALSE(out(sent)) << sent.dst << ": the allow is gone";
    in(answer_to(sent));
    EXPECT_FALSE(out(sent)) << sent.dst << ": the peer going on sending opens nothing";
  }
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_REPLY), 0U);
}

// The same for flows opened while nothing was enforced, or under a
// denylist's default: an allowlist set later judges them.
TEST_P(FlowVerdictTest, AUdpFlowOpenedBeforeAnAllowlistIsJudgedByIt) {
  for (const Mode before : {Mode::kDisabled, Mode::kDenylist}) {
    set_mode(before);
    PacketSpec sent = udp4("198.51.100.61");
    sent.sport = before == Mode::kDisabled ? 41000 : 41001;
    EXPECT_TRUE(out(sent));
    in(answer_to(sent));
    set_mode(Mode::kAllowlist);
    EXPECT_FALSE(out(sent)) << "opened under mode " << static_cast<int>(before);
  }
}

// A UDP flow (a QUIC connection) opened under a learned allow goes on past
// the TTL while in use, as a TCP connection does, and a new one is refused.
// When the host is taken back, the flow ends, whatever the peer sends.
TEST_P(FlowVerdictTest, AUdpFlowOpenedUnderALearnedAllowOutlivesItsTtlUntilTheHostIsTakenBack) {
  set_mode(Mode::kAllowlist);
  const datapath::Rule learned = {*net::IpPrefix::parse("198.51.100.62"), datapath::Action::kAllow,
                                  datapath::BootClock::now() + std::chrono::milliseconds(600),
                                  /*learned=*/true};
  ASSERT_TRUE(dp_->add_rule(key_, learned).ok());
  const PacketSpec sent = udp4("198.51.100.62");
  EXPECT_TRUE(out(sent));
  in(answer_to(sent));
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  EXPECT_TRUE(out(sent)) << "the flow in use goes on";
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_KEPT_CONNECTION), 1U);
  PacketSpec fresh = sent;
  fresh.sport = 40002;
  EXPECT_FALSE(out(fresh)) << "a new flow after the TTL is refused";

  const std::vector<net::IpAddress> taken_back = {*net::IpAddress::parse("198.51.100.62")};
  auto forgotten = dp_->forget_learned_connections(key_, taken_back);
  ASSERT_TRUE(forgotten.ok()) << forgotten.error().message();
  EXPECT_EQ(*forgotten, 1U);
  EXPECT_FALSE(out(sent)) << "the host is taken back";
  in(answer_to(sent));
  EXPECT_FALSE(out(sent)) << "the peer going on sending opens nothing";
}

TEST_P(FlowVerdictTest, RepliesOnInboundFlowsPassTheAllowlist) {
  // Someone outside connects to the workload; its answers must get out.
  in({.src = "203.0.113.50",
      .dst = self4(),
      .l4 = L4::kTcp,
      .sport = 51000,
      .dport = 22,
      .tcp_flags = kTcpSyn});
  EXPECT_TRUE(out({.src = self4(),
                   .dst = "203.0.113.50",
                   .l4 = L4::kTcp,
                   .sport = 22,
                   .dport = 51000,
                   .tcp_flags = kTcpSynAck}));
  EXPECT_TRUE(out({.src = self4(),
                   .dst = "203.0.113.50",
                   .l4 = L4::kTcp,
                   .sport = 22,
                   .dport = 51000,
                   .tcp_flags = kTcpAck}));
  // Not another port of that host, nor the same port of another host.
  EXPECT_FALSE(out({.src = self4(),
                    .dst = "203.0.113.50",
                    .l4 = L4::kTcp,
                    .sport = 22,
                    .dport = 51001,
                    .tcp_flags = kTcpAck}));
  EXPECT_FALSE(out({.src = self4(),
                    .dst = "203.0.113.51",
                    .l4 = L4::kTcp,
                    .sport = 22,
                    .dport = 51000,
                    .tcp_flags = kTcpAck}));
  // UDP and ICMP echo, IPv6.
  in({.src = "2001:db8:1::50", .dst = self6(), .l4 = L4::kUdp, .sport = 5000, .dport = 6000});
  EXPECT_TRUE(
      out({.src = self6(), .dst = "2001:db8:1::50", .l4 = L4::kUdp, .sport = 6000, .dport = 5000}));
  in({.src = "198.51.100.50", .dst = self4(), .l4 = L4::kIcmp, .icmp_type = 8, .icmp_id = 77});
  EXPECT_TRUE(out(
      {.src = self4(), .dst = "198.51.100.50", .l4 = L4::kIcmp, .icmp_type = 0, .icmp_id = 77}));
  EXPECT_FALSE(out({.src = self4(),
                    .dst = "198.51.100.50",
                    .l4 = L4::kIcmp,
                    .icmp_type = 8,
                    .icmp_id = 77}));  // a request of our own is no reply
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_REPLY), 4U);
}

TEST_P(FlowVerdictTest, OutboundSynAckDoesNotOpenAFlow) {
  // An inbound SYN-ACK answers something the workload started: no flow.
  in({.src = "203.0.113.50",
      .dst = self4(),
      .l4 = L4::kTcp,
      .sport = 443,
      .dport = 40000,
      .tcp_flags = kTcpSynAck});
  EXPECT_FALSE(out({.src = self4(),
                    .dst = "203.0.113.50",
                    .l4 = L4::kTcp,
                    .sport = 40000,
                    .dport = 443,
                    .tcp_flags = kTcpAck}));
}

TEST_P(FlowVerdictTest, ExplicitDenyAndBlockAllStopReplies) {
  in({.src = "203.0.113.50",
      .dst = self4(),
      .l4 = L4::kTcp,
      .sport = 51000,
      .dport = 22,
      .tcp_flags = kTcpSyn});
  const PacketSpec reply = {.src = self4(),
                            .dst = "203.0.113.50",
                            .l4 = L4::kTcp,
                            .sport = 22,
                            .dport = 51000,
                            .tcp_flags = kTcpAck};
  EXPECT_TRUE(out(reply));
  deny("203.0.113.50");
  EXPECT_FALSE(out(reply));
  ASSERT_TRUE(dp_->remove_rule(key_, *net::IpPrefix::parse("203.0.113.50")).ok());
  EXPECT_TRUE(out(reply));
  set_mode(Mode::kBlockAll);
  EXPECT_FALSE(out(reply));
}

TEST_P(FlowVerdictTest, NonFirstFragmentsAreJudgedByAddress) {
  allow("198.51.100.1");
  PacketSpec frag = udp4("198.51.100.1");
  frag.non_first_fragment = true;
  EXPECT_TRUE(out(frag));
  frag.dst = "198.51.100.2";
  EXPECT_FALSE(out(frag));
  PacketSpec frag6 = udp6("2001:db8:1::1");
  frag6.non_first_fragment = true;
  EXPECT_FALSE(out(frag6));
}

// A large UDP reply leaves in fragments; only the first carries ports. The
// later ones of that datagram follow it, and nothing else gets out that way.
TEST_P(FlowVerdictTest, LaterFragmentsOfAReplyFollowItsFirst) {
  for (const bool v6 : {false, true}) {
    const std::string peer = v6 ? "2001:db8:5::50" : "203.0.113.50";
    const std::string self = v6 ? self6() : self4();
    in({.src = peer, .dst = self, .l4 = L4::kUdp, .sport = 53000, .dport = 53});
    PacketSpec first = {.src = self,
                        .dst = peer,
                        .l4 = L4::kUdp,
                        .sport = 53,
                        .dport = 53000,
                        .more_fragments = true,
                        .fragment_id = 0x10007};
    PacketSpec later = first;
    later.non_first_fragment = true;
    later.more_fragments = false;
    PacketSpec other_datagram = later;
    other_datagram.fragment_id = 0x10008;
    PacketSpec other_host = later;
    other_host.dst = v6 ? "2001:db8:5::51" : "203.0.113.51";

    EXPECT_FALSE(out(later)) << "a later fragment before any first: judged by address";
    EXPECT_TRUE(out(first)) << (v6 ? "v6" : "v4");
    EXPECT_TRUE(out(later)) << (v6 ? "v6" : "v4");
    EXPECT_TRUE(out(later)) << "every later fragment of it";
    EXPECT_FALSE(out(other_datagram));
    EXPECT_FALSE(out(other_host));
  }
}

// The idle timeouts are load-time settings: a flow unused for longer no
// longer lets replies through, and a reply refreshes it.
class FlowIdleTest : public ProgramTest {
 protected:
  void configure(datapath::Config& config) override {
    config.flow_idle_other = std::chrono::seconds(2);
  }
};

TEST_P(FlowIdleTest, IdleFlowsStopCountingAsReplies) {
  const PacketSpec request = {
      .src = "203.0.113.50", .dst = self4(), .l4 = L4::kUdp, .sport = 5000, .dport = 6000};
  const PacketSpec reply = {
      .src = self4(), .dst = "203.0.113.50", .l4 = L4::kUdp, .sport = 6000, .dport = 5000};
  in(request);
  EXPECT_TRUE(out(reply));
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_TRUE(out(reply));  // refreshes the flow (older than 1 s)
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_TRUE(out(reply));  // 1.2 s since the refresh: still within 2 s
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  EXPECT_FALSE(out(reply));
}

// A flow the outside opened stays the outside's when its peer is allowed
// too: the peer's datagrams keep it open, though the workload's are let
// out by the allow, and once the allow goes they are still replies.
TEST_P(FlowIdleTest, AUdpFlowTheOutsideOpenedStaysAReplyFlowWhenItsPeerIsAllowedToo) {
  set_mode(Mode::kAllowlist);
  allow("203.0.113.60");
  const PacketSpec request = {
      .src = "203.0.113.60", .dst = self4(), .l4 = L4::kUdp, .sport = 5000, .dport = 6000};
  for (int i = 0; i < 4; ++i) {  // 4.8 s: the flow idles out in 2 s unless the peer keeps it
    in(request);
    EXPECT_TRUE(out(answer_to(request)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  }
  ASSERT_TRUE(dp_->remove_rule(key_, *net::IpPrefix::parse("203.0.113.60")).ok());
  in(request);
  EXPECT_TRUE(out(answer_to(request)));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_REPLY), 1U);
}

INSTANTIATE_TEST_SUITE_P(Programs, FlowVerdictTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, FlowIdleTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

}  // namespace
}  // namespace sebpf::testing
