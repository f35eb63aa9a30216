// What the packet programs let through whatever the rules say, and where
// that stops: the attachment's DNS endpoint (not another resolver, nor
// another attachment's endpoint), neighbour discovery and link control,
// a cgroup's loopback.
#include <chrono>

#include "program_fixture.h"
#include "verdict_packets.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;
using std::chrono::seconds;

class AlwaysAllowedTest : public ProgramTest {};

TEST_P(AlwaysAllowedTest, DnsEndpointAlwaysReachable) {
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
TEST_P(AlwaysAllowedTest, OtherResolversNeedAnExplicitAllow) {
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

TEST_P(AlwaysAllowedTest, NeighbourDiscoveryAndLinkControlAlwaysAllowed) {
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
TEST_P(AlwaysAllowedTest, NeighbourDiscoveryToRoutableAddressesIsJudgedByTheRules) {
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
TEST_P(AlwaysAllowedTest, NeighboursThatSolicitTheWorkloadMayBeAnswered) {
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

INSTANTIATE_TEST_SUITE_P(Programs, AlwaysAllowedTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, DnsPortRangeTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

INSTANTIATE_TEST_SUITE_P(Programs, CgroupLoopbackTest, ::testing::Values(ProgramKind::kCgroupSkb),
                         kind_name);

}  // namespace
}  // namespace sebpf::testing
