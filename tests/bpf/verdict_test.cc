// The decision of the packet programs, TC and cgroup_skb alike, on crafted
// packets: every mode, longest prefix, allow+deny tie, expiry, the
// always-allowed set, replies on inbound flows, counters by reason.
#include <atomic>
#include <chrono>
#include <thread>

#include "program_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::BootClock;
using datapath::Mode;
using std::chrono::seconds;

PacketSpec tcp4(const char* dst, uint16_t dport = 443) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kTcp, .dport = dport};
}
PacketSpec udp4(const char* dst, uint16_t dport = 5000) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kUdp, .dport = dport};
}
PacketSpec icmp4(const char* dst) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kIcmp, .icmp_type = 8};
}
PacketSpec tcp6(const char* dst, uint16_t dport = 443) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kTcp, .dport = dport};
}
PacketSpec udp6(const char* dst, uint16_t dport = 5000) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kUdp, .dport = dport};
}
PacketSpec icmp6(const char* dst) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kIcmpv6, .icmp_type = 128};
}

// The peer's answer to a datagram the workload sent.
PacketSpec answer_to(const PacketSpec& sent) {
  PacketSpec answer = sent;
  std::swap(answer.src, answer.dst);
  std::swap(answer.sport, answer.dport);
  return answer;
}

class VerdictTest : public ProgramTest {};

TEST_P(VerdictTest, DisabledAllowsEverythingAndCounts) {
  set_mode(Mode::kDisabled);
  deny("198.51.100.0/24");
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(udp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_MODE_DISABLED), 2U);
}

TEST_P(VerdictTest, AllowlistDeniesEverythingUnlisted) {
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(udp4("198.51.100.1", 123)));
  EXPECT_FALSE(out(icmp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));
  EXPECT_FALSE(out(udp6("2001:db8:1::1", 123)));
  EXPECT_FALSE(out(icmp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_DEFAULT), 6U);
}

TEST_P(VerdictTest, AllowlistAllowsListedHostsOnly) {
  allow("198.51.100.10");
  allow("2001:db8:1::10");
  EXPECT_TRUE(out(tcp4("198.51.100.10")));
  EXPECT_TRUE(out(udp4("198.51.100.10", 123)));
  EXPECT_TRUE(out(icmp4("198.51.100.10")));
  EXPECT_FALSE(out(tcp4("198.51.100.11")));
  EXPECT_TRUE(out(tcp6("2001:db8:1::10")));
  EXPECT_TRUE(out(icmp6("2001:db8:1::10")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::11")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_RULE), 5U);
  EXPECT_EQ(count(SEBPF_REASON_DENY_DEFAULT), 2U);
}

TEST_P(VerdictTest, LongestPrefixDecides) {
  allow("203.0.113.0/24");
  deny("203.0.113.128/25");
  allow("203.0.113.192/26");
  allow("203.0.113.130");
  EXPECT_TRUE(out(tcp4("203.0.113.1")));     // /24 allow
  EXPECT_FALSE(out(tcp4("203.0.113.129")));  // /25 deny
  EXPECT_TRUE(out(tcp4("203.0.113.130")));   // /32 allow beats /25 deny
  EXPECT_TRUE(out(tcp4("203.0.113.200")));   // /26 allow beats /25 deny
  allow("2001:db8::/32");
  deny("2001:db8:bad::/48");
  allow("2001:db8:bad:1::/64");
  EXPECT_TRUE(out(tcp6("2001:db8:1::1")));
  EXPECT_FALSE(out(tcp6("2001:db8:bad::1")));
  EXPECT_TRUE(out(tcp6("2001:db8:bad:1::1")));
}

TEST_P(VerdictTest, ZeroLengthPrefixCoversEverything) {
  allow("0.0.0.0/0");
  deny("198.51.100.0/24");
  EXPECT_TRUE(out(tcp4("203.0.113.9")));
  EXPECT_FALSE(out(tcp4("198.51.100.9")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));  // ::/0 was not allowed
  allow("::/0");
  EXPECT_TRUE(out(tcp6("2001:db8:1::1")));
}

TEST_P(VerdictTest, AllowAndDenyOnOnePrefixMeansDeny) {
  allow("198.51.100.0/24");
  deny("198.51.100.0/24");
  allow("203.0.113.5");
  deny("203.0.113.5");
  allow("2001:db8:1::/48");
  deny("2001:db8:1::/48");
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp4("203.0.113.5")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 3U);
}

TEST_P(VerdictTest, DenylistAllowsAllButDenied) {
  set_mode(Mode::kDenylist);
  deny("198.51.100.0/24");
  deny("2001:db8:bad::1");
  allow("198.51.100.7");
  EXPECT_TRUE(out(tcp4("203.0.113.1")));
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(tcp4("198.51.100.7")));
  EXPECT_FALSE(out(udp6("2001:db8:bad::1")));
  EXPECT_TRUE(out(udp6("2001:db8:bad::2")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_DEFAULT), 2U);
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 2U);
}

// 64:ff9b::c633:6407 is 198.51.100.7 through a NAT64 translator: the IPv4
// rules hold for it too, a deny in either family winning.
TEST_P(VerdictTest, Nat64DestinationsAreJudgedByTheirIpv4RulesToo) {
  set_mode(Mode::kDenylist);
  deny("198.51.100.0/24");
  EXPECT_FALSE(out(tcp6("64:ff9b::c633:6407")));
  EXPECT_TRUE(out(tcp6("64:ff9b::cb00:7107")));  // 203.0.113.7
  EXPECT_TRUE(out(tcp6("64:ff9b:1::c633:6407"))) << "outside the well-known /96";

  set_mode(Mode::kAllowlist);
  allow("203.0.113.7");
  EXPECT_TRUE(out(tcp6("64:ff9b::cb00:7107")));
  EXPECT_FALSE(out(tcp6("64:ff9b::cb00:7108")));
  deny("64:ff9b::cb00:7107");
  EXPECT_FALSE(out(tcp6("64:ff9b::cb00:7107"))) << "the IPv6 deny wins over the IPv4 allow";
  allow("64:ff9b::c633:6407");
  EXPECT_FALSE(out(tcp6("64:ff9b::c633:6407"))) << "the IPv4 deny wins over the IPv6 allow";
}

TEST_P(VerdictTest, BlockAllIgnoresAllowRules) {
  set_mode(Mode::kBlockAll);
  allow("0.0.0.0/0");
  allow("198.51.100.1");
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp4("203.0.113.1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_BLOCK_ALL), 2U);
}

TEST_P(VerdictTest, ExpiredRuleNoLongerMatches) {
  const auto past = BootClock::now() - seconds(1);
  const auto future = BootClock::now() + seconds(3600);
  allow("198.51.100.1", past);
  allow("198.51.100.2", future);
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(tcp4("198.51.100.2")));
  // An expired host deny falls back to the prefix below it.
  allow("203.0.113.0/24");
  deny("203.0.113.9", past);
  EXPECT_TRUE(out(tcp4("203.0.113.9")));
  // An expired prefix allow falls back to the shorter prefix under it.
  deny("192.0.2.0/24");
  allow("192.0.2.128/25", past);
  allow("192.0.2.192/26", past);
  EXPECT_FALSE(out(tcp4("192.0.2.200")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 1U);
  // The same in IPv6, through many nested expired prefixes.
  allow("2001:db8::/32");
  for (int len : {40, 48, 56, 64, 80, 96, 112}) {
    deny("2001:db8::/" + std::to_string(len), past);
  }
  EXPECT_TRUE(out(tcp6("2001:db8::1")));
}

TEST_P(VerdictTest, RuleExpiresAtItsTime) {
  allow("198.51.100.1", BootClock::now() + std::chrono::milliseconds(300));
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
}

TEST_P(VerdictTest, DeniedSideExpiresAndAllowStays) {
  const auto past = BootClock::now() - seconds(1);
  allow("198.51.100.0/24");
  deny("198.51.100.0/24", past);
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
}

TEST_P(VerdictTest, DnsEndpointAlwaysReachable) {
  datapath::DnsEndpoint dns;
  dns.v4 = *net::IpAddress::parse("192.0.2.1");
  dns.v6 = *net::IpAddress::parse("2001:db8::1");
  dns.port = 5353;
  ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(out(udp4("192.0.2.1", 5353)));
  EXPECT_TRUE(out(tcp4("192.0.2.1", 5353)));
  EXPECT_TRUE(out(udp6("2001:db8::1", 5353)));
  // Port 53 there: a guest's query is turned to the endpoint's port
  // (Dns53Test); a cgroup's would have been steered at its socket call.
  const bool tc = GetParam() == ProgramKind::kTc;
  EXPECT_EQ(out(udp4("192.0.2.1", 53)), tc);
  EXPECT_FALSE(out(udp4("192.0.2.1", 54)));     // another port
  EXPECT_FALSE(out(udp4("192.0.2.99", 5353)));  // another address
  EXPECT_FALSE(out(icmp4("192.0.2.1")));        // not DNS
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_DNS_ENDPOINT), tc ? 4U : 3U);
  // Found behind an IPv6 extension header too.
  PacketSpec spec = udp6("2001:db8::1", 5353);
  spec.ipv6_hop_by_hop = true;
  EXPECT_TRUE(out(spec));
}

// Names are resolved through the endpoint, where the domain rules apply: DNS
// (UDP or TCP port 53) to any other resolver needs an explicit allow, in
// every mode. An address learned from DNS is not one: a workload that
// resolved a resolver's name still may not query it directly.
TEST_P(VerdictTest, OtherResolversNeedAnExplicitAllow) {
  set_mode(Mode::kDenylist);
  EXPECT_FALSE(out(udp4("203.0.113.53", 53)));
  EXPECT_FALSE(out(tcp6("2001:db8:5::53", 53)));
  EXPECT_TRUE(out(udp4("203.0.113.53", 5000))) << "other ports: the denylist default";
  EXPECT_EQ(count(SEBPF_REASON_DENY_RESOLVER), 2U);
  allow("203.0.113.53");
  EXPECT_TRUE(out(udp4("203.0.113.53", 53)));
  EXPECT_TRUE(out(tcp4("203.0.113.53", 53)));

  set_mode(Mode::kAllowlist);
  const datapath::Rule learned = {*net::IpPrefix::parse("198.51.100.53"), datapath::Action::kAllow,
                                  datapath::BootClock::now() + seconds(60), /*learned=*/true};
  ASSERT_TRUE(dp_->add_rule(key_, learned).ok());
  EXPECT_TRUE(out(tcp4("198.51.100.53", 443))) << "a learned address is reachable";
  EXPECT_FALSE(out(udp4("198.51.100.53", 53))) << "but not as a resolver";
  allow("198.51.100.0/24");
  EXPECT_TRUE(out(udp4("198.51.100.53", 53))) << "the user's rules decide, not the learned one";
  deny("198.51.100.0/25");
  EXPECT_FALSE(out(udp4("198.51.100.53", 53)));
  EXPECT_TRUE(out(tcp4("198.51.100.53", 443))) << "other ports: the learned /32 is longest";
  EXPECT_TRUE(out(udp4("203.0.113.53", 53)));
  PacketSpec nat64 = udp6("64:ff9b::cb00:7135", 53);  // 203.0.113.53 through NAT64
  EXPECT_TRUE(out(nat64)) << "an explicit allow of the IPv4 host counts";
}

// A TCP connection the workload opened to an address learned from DNS
// outlives the address's TTL (an idle connection to a CDN is not cut), and
// only that connection: a new one is refused, and an RST ends it.
TEST_P(VerdictTest, AConnectionOpenedUnderALearnedAllowOutlivesItsTtl) {
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
TEST_P(VerdictTest, ForgottenLearnedConnectionsEndAtTheirNextPacket) {
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
TEST_P(VerdictTest, AUdpFlowTheWorkloadOpenedEndsWithTheAllowThatOpenedIt) {
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
TEST_P(VerdictTest, AUdpFlowOpenedBeforeAnAllowlistIsJudgedByIt) {
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
TEST_P(VerdictTest, AUdpFlowOpenedUnderALearnedAllowOutlivesItsTtlUntilTheHostIsTakenBack) {
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

TEST_P(VerdictTest, NeighbourDiscoveryAndLinkControlAlwaysAllowed) {
  set_mode(Mode::kBlockAll);
  PacketSpec ns = {.src = "fe80::2",
                   .dst = "ff02::1:ff00:1",
                   .l4 = L4::kIcmpv6,
                   .icmp_type = 135,
                   .hop_limit = 255};
  EXPECT_TRUE(out(ns));
  ns.icmp_type = 133;  // router solicitation
  ns.dst = "ff02::2";
  EXPECT_TRUE(out(ns));
  ns.hop_limit = 64;  // a routed "ND" packet is not ND
  EXPECT_FALSE(out(ns));
  PacketSpec mld = {
      .src = "fe80::2", .dst = "ff02::16", .l4 = L4::kIcmpv6, .icmp_type = 143, .hop_limit = 1};
  EXPECT_TRUE(out(mld));
  mld.dst = "2001:db8:1::1";  // MLD is link-scope only
  EXPECT_FALSE(out(mld));
  // DHCP only for VMs: from a cgroup it would only be a broadcast channel.
  const bool vm = GetParam() == ProgramKind::kTc;
  PacketSpec dhcp = {.src = "0.0.0.0",
                     .dst = "255.255.255.255",
                     .l4 = L4::kUdp,
                     .sport = 68,
                     .dport = 67,
                     .payload_bytes = dhcp4_message(1)};
  EXPECT_EQ(out(dhcp), vm);
  dhcp.dst = "198.51.100.1";  // unicast DHCP can leave the link
  EXPECT_FALSE(out(dhcp));
  PacketSpec dhcp6 = {.src = "fe80::2",
                      .dst = "ff02::1:2",
                      .l4 = L4::kUdp,
                      .sport = 546,
                      .dport = 547,
                      .payload_bytes = dhcp6_message(1)};
  EXPECT_EQ(out(dhcp6), vm);
  dhcp6.dst = "ff02:1::1:2";  // not the DHCPv6 servers' group
  EXPECT_FALSE(out(dhcp6));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_LINK_LOCAL), vm ? 5U : 3U);
}

// ND with hop limit 255 to a routable address would still be routed, its
// payload reaching whoever owns the address: only link-local, link-scope
// multicast and the host side's own address are exempt; other neighbours
// are judged by the rules.
TEST_P(VerdictTest, NeighbourDiscoveryToRoutableAddressesIsJudgedByTheRules) {
  set_mode(Mode::kAllowlist);
  PacketSpec na = {.src = "2001:db8::2",
                   .dst = "2001:db8:1::99",
                   .l4 = L4::kIcmpv6,
                   .icmp_type = 136,
                   .hop_limit = 255};
  EXPECT_FALSE(out(na));
  na.dst = "fe80::1";
  EXPECT_TRUE(out(na));
  na.dst = "2001:db8:1::99";
  allow("2001:db8:1::99");  // a neighbour it may talk to, it may resolve
  EXPECT_TRUE(out(na));
  na.dst = "2001:db8:1::98";
  datapath::DnsEndpoint dns;
  dns.v6 = *net::IpAddress::parse("2001:db8:1::98");
  dns.port = 53;
  ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
  EXPECT_TRUE(out(na));  // the host side's own address
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(out(na));
  na.dst = "2001:db8:1::99";
  EXPECT_FALSE(out(na));
}

// A neighbour that solicits the workload with hop limit 255 is on the link
// (routers never forward that): the workload may answer it, and check on
// it later, at its global address, in any mode. A routed "solicitation"
// (hop limit below 255) proves nothing.
TEST_P(VerdictTest, NeighboursThatSolicitTheWorkloadMayBeAnswered) {
  set_mode(Mode::kBlockAll);
  PacketSpec ns = {.src = "2001:db8:1::7",
                   .dst = "ff02::1:ff00:2",
                   .l4 = L4::kIcmpv6,
                   .icmp_type = 135,
                   .hop_limit = 254};
  in(ns);
  PacketSpec na = {.src = "2001:db8:1::2",
                   .dst = "2001:db8:1::7",
                   .l4 = L4::kIcmpv6,
                   .icmp_type = 136,
                   .hop_limit = 255};
  EXPECT_FALSE(out(na));
  ns.hop_limit = 255;
  in(ns);
  EXPECT_TRUE(out(na));
  na.icmp_type = 135;  // a later unicast probe of the neighbour
  EXPECT_TRUE(out(na));
  na.icmp_type = 128;  // but nothing else: an echo request is not ND
  na.hop_limit = 64;
  EXPECT_FALSE(out(na));
}

TEST_P(VerdictTest, RepliesOnInboundFlowsPassTheAllowlist) {
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

TEST_P(VerdictTest, OutboundSynAckDoesNotOpenAFlow) {
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

TEST_P(VerdictTest, ExplicitDenyAndBlockAllStopReplies) {
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

TEST_P(VerdictTest, NonFirstFragmentsAreJudgedByAddress) {
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
TEST_P(VerdictTest, LaterFragmentsOfAReplyFollowItsFirst) {
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

TEST_P(VerdictTest, TruncatedHeadersAreDenied) {
  set_mode(Mode::kDenylist);
  const auto packet = build_packet(tcp4("198.51.100.1"));
  EXPECT_TRUE(run_out(packet).allowed);
  EXPECT_FALSE(run_out(truncate(packet, 14 + 20 + 6)).allowed);  // TCP header cut
  EXPECT_EQ(count(SEBPF_REASON_DENY_MALFORMED), 1U);
}

// A source route makes the destination address only the first hop: in
// any enforcing mode the packet is dropped, whatever the rules say of it.
TEST_P(VerdictTest, SourceRoutedPacketsAreDenied) {
  allow("198.51.100.1");
  allow("2001:db8:1::1");
  PacketSpec v4 = tcp4("198.51.100.1");
  v4.ipv4_options = {1, 148, 4, 0, 0};  // NOOP, router alert (harmless)
  EXPECT_TRUE(out(v4));
  for (uint8_t type : {uint8_t{131}, uint8_t{137}}) {  // LSRR, SSRR
    v4.ipv4_options = {1, type, 7, 4, 203, 0, 113, 9};
    EXPECT_FALSE(out(v4)) << int(type);
  }
  v4.ipv4_options = {1, 68, 1};  // an option whose length is too short
  EXPECT_FALSE(out(v4));
  v4.ipv4_options = {0, 131, 7, 4, 203, 0, 113, 9};  // after END: not an option
  EXPECT_TRUE(out(v4));

  PacketSpec v6 = tcp6("2001:db8:1::1");
  v6.ipv6_routing_segments_left = 0;  // a spent route is harmless
  EXPECT_TRUE(out(v6));
  v6.ipv6_routing_segments_left = 1;
  EXPECT_FALSE(out(v6));
  set_mode(Mode::kDenylist);
  EXPECT_FALSE(out(v6));
  v4.ipv4_options = {131, 7, 4, 203, 0, 113, 9};
  EXPECT_FALSE(out(v4));
  set_mode(Mode::kDisabled);
  EXPECT_TRUE(out(v4));
}

TEST_P(VerdictTest, ReplacePolicySwapsModeAndRulesTogether) {
  allow("198.51.100.1");
  const std::vector<datapath::Rule> rules = {rule("203.0.113.0/24", datapath::Action::kDeny)};
  ASSERT_TRUE(dp_->replace_policy(key_, Mode::kDenylist, rules).ok());
  EXPECT_TRUE(out(tcp4("198.51.100.1")));  // denylist default
  EXPECT_FALSE(out(tcp4("203.0.113.1")));
  auto listed = dp_->rules(key_);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, rules);
}

// Two policies under which 198.51.100.7 is allowed and .8 denied; any mix of
// one's mode with the other's rules flips one of them. Packets run while
// the policy flips back and forth must never see a mix.
TEST_P(VerdictTest, ReplacePolicyIsAtomicForConcurrentPackets) {
  using datapath::Action;
  const std::vector<datapath::Rule> a = {rule("198.51.100.7", Action::kAllow)};
  const std::vector<datapath::Rule> b = {rule("198.51.100.8", Action::kDeny)};
  ASSERT_TRUE(dp_->replace_policy(key_, Mode::kAllowlist, a).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, runs{0};
  const auto p7 = build_packet(tcp4("198.51.100.7"));
  const auto p8 = build_packet(tcp4("198.51.100.8"));
  std::thread packets([&] {
    while (!stop) {
      if (!run_out(p7).allowed) ++mixed;
      if (run_out(p8).allowed) ++mixed;
      ++runs;
    }
  });
  bool replaced = true;
  for (int i = 0; i < 300 && replaced; ++i) {
    replaced = dp_->replace_policy(key_, Mode::kDenylist, b).ok() &&
               dp_->replace_policy(key_, Mode::kAllowlist, a).ok();
  }
  stop = true;
  packets.join();
  EXPECT_TRUE(replaced);
  EXPECT_GT(runs.load(), 0);
  EXPECT_EQ(mixed.load(), 0) << "packets saw one policy's mode with the other's rules";
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

class DnsPortRangeTest : public ProgramTest {
 protected:
  void configure(datapath::Config& config) override {
    config.dns_port_first = 20000;
    config.dns_port_last = 20999;
  }
  // The attachment's own endpoint: 127.0.0.1, port 20007.
  void set_loopback_endpoint() {
    datapath::DnsEndpoint dns;
    dns.v4 = *net::IpAddress::parse("127.0.0.1");
    dns.port = 20007;
    ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
  }
};

// The guests of one bridge have their endpoints on its address, a port
// each: another's port there is refused as another resolver, whatever the
// mode lets through. The same ports elsewhere are ordinary traffic.
TEST_P(DnsPortRangeTest, AGuestCannotUseAnotherAttachmentsEndpointOnItsEndpointsAddress) {
  datapath::DnsEndpoint dns;
  dns.v4 = *net::IpAddress::parse("198.51.100.1");
  dns.v6 = *net::IpAddress::parse("2001:db8::1");
  dns.port = 20007;
  ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
  set_mode(Mode::kDenylist);
  EXPECT_TRUE(out(udp4("198.51.100.1", 20007))) << "its own";
  EXPECT_TRUE(out(tcp6("2001:db8::1", 20007)));
  EXPECT_FALSE(out(udp4("198.51.100.1", 20008))) << "another attachment's";
  EXPECT_FALSE(out(tcp6("2001:db8::1", 20999)));
  EXPECT_TRUE(out(tcp4("198.51.100.1", 21000))) << "outside the range";
  EXPECT_TRUE(out(udp4("203.0.113.9", 20008))) << "a port of the range elsewhere";
  EXPECT_EQ(count(SEBPF_REASON_DENY_RESOLVER), 2U);
}

// Loopback, which only cgroups' programs treat apart.
class CgroupLoopbackTest : public DnsPortRangeTest {};

// Loopback is open to cgroups, but another attachment's DNS endpoint there
// is not: it would put the workload under that attachment's domain rules.
TEST_P(CgroupLoopbackTest, ACgroupCannotUseAnotherAttachmentsEndpointOnLoopback) {
  set_loopback_endpoint();
  if (HasFatalFailure()) return;
  set_mode(Mode::kDenylist);
  EXPECT_TRUE(out(udp4("127.0.0.1", 20007))) << "its own";
  EXPECT_TRUE(out(tcp4("127.0.0.1", 21000))) << "outside the range";
  EXPECT_FALSE(out(udp4("127.0.0.1", 20008))) << "another attachment's";
  EXPECT_FALSE(out(tcp6("::1", 20999)));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RESOLVER), 2U);
}

// Loopback is open to cgroups, except where a deny rule within loopback
// closes it: a workload in the host's network namespace would otherwise
// reach every service on the host's loopback. Broader rules do not reach
// it, and the attachment's own DNS endpoint there stays open.
TEST_P(CgroupLoopbackTest, ADenyRuleWithinLoopbackClosesItAndNothingBroaderDoes) {
  set_loopback_endpoint();
  if (HasFatalFailure()) return;
  set_mode(Mode::kAllowlist);
  deny("0.0.0.0/0");
  deny("::/0");
  deny("126.0.0.0/7");  // holds loopback, but is broader than it
  EXPECT_TRUE(out(tcp4("127.0.0.1", 8080))) << "a catch-all deny leaves loopback open";
  EXPECT_TRUE(out(tcp6("::1", 8080)));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 0U);

  deny("127.0.0.0/8");
  deny("::1/128");
  allow("127.0.0.53");
  EXPECT_FALSE(out(tcp4("127.0.0.1", 8080)));
  EXPECT_FALSE(out(udp4("127.200.0.1", 8080)));
  EXPECT_FALSE(out(tcp6("::1", 8080)));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 3U);
  EXPECT_TRUE(out(udp4("127.0.0.53", 8080))) << "a longer allow decides";
  EXPECT_TRUE(out(udp4("127.0.0.1", 20007))) << "the DNS endpoint stays open";
  EXPECT_TRUE(out(tcp4("127.0.0.1", 20007)));
  EXPECT_FALSE(out(udp4("127.0.0.1", 20008))) << "another endpoint stays closed";
}

INSTANTIATE_TEST_SUITE_P(Programs, CgroupLoopbackTest, ::testing::Values(ProgramKind::kCgroupSkb),
                         kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, DnsPortRangeTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, FlowIdleTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, VerdictTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

}  // namespace
}  // namespace sebpf::testing
