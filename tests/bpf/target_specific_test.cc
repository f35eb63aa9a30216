// What differs between interface and cgroup attachments: ARP and non-IP
// frames exist only on links; loopback is always allowed only for cgroups.
#include <linux/pkt_cls.h>

#include <chrono>
#include <thread>

#include "program_fixture.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;

class TcOnlyTest : public ProgramTest {
 protected:
  // The DHCP checks below send more requests than a budget holds
  // (DhcpBudgetTest is about the budget).
  void configure(datapath::Config& config) override { config.dhcp_request_burst = 1000; }
};

TEST_P(TcOnlyTest, ArpAlwaysPasses) {
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(run_out(build_arp(1)).allowed);
  EXPECT_TRUE(run_out(build_arp(2, 42)).allowed);  // unpadded, as a tap sends it
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_LINK_LOCAL), 2U);
}

// ARP is always allowed, so it must be only ARP: not a way to carry data.
TEST_P(TcOnlyTest, ArpThatIsNotPlainArpIsDenied) {
  set_mode(Mode::kAllowlist);
  EXPECT_FALSE(run_out(build_frame(0x0806, 28)).allowed);  // all zero: no valid header
  EXPECT_FALSE(run_out(build_arp(1, 200)).allowed);        // a payload riding along
  EXPECT_FALSE(run_out(build_arp(3)).allowed);             // RARP request
  auto other_protocol = build_arp(1);
  other_protocol[16] = 0x86;  // ptype IPv6
  other_protocol[17] = 0xdd;
  EXPECT_FALSE(run_out(other_protocol).allowed);
  EXPECT_EQ(count(SEBPF_REASON_DENY_MALFORMED), 4U);
  set_mode(Mode::kDisabled);
  EXPECT_TRUE(run_out(build_arp(1, 200)).allowed);
}

// DHCP requests pass whatever the rules say, so only a client's request
// may: not any datagram between the DHCP ports, not one that claims
// another machine's hardware address (a DHCP server's pool is exhausted
// that way), not one with room for other data.
TEST_P(TcOnlyTest, OnlyWellFormedDhcpClientRequestsPass) {
  set_mode(Mode::kBlockAll);
  const auto dhcp4 = [&](std::vector<uint8_t> payload, bool fragment = false) {
    return out({.src = "0.0.0.0",
                .dst = "255.255.255.255",
                .l4 = L4::kUdp,
                .sport = 68,
                .dport = 67,
                .more_fragments = fragment,
                .payload_bytes = std::move(payload)});
  };
  const auto edit = [](std::vector<uint8_t> m, size_t at, uint8_t value) {
    m.at(at) = value;
    return m;
  };
  for (uint8_t type : {1, 3, 4, 7, 8}) EXPECT_TRUE(dhcp4(dhcp4_message(type))) << int{type};
  auto minimal = dhcp4_message(1);
  minimal.resize(249);  // END is at 248: no padding at all
  EXPECT_TRUE(dhcp4(minimal)) << "padding is optional";

  EXPECT_FALSE(dhcp4(dhcp4_message(2))) << "OFFER: a server's message";
  EXPECT_FALSE(dhcp4(dhcp4_message(5))) << "ACK";
  EXPECT_FALSE(dhcp4(std::vector<uint8_t>(300, 0xab))) << "any bytes between the DHCP ports";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 0, 2))) << "BOOTREPLY";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 1, 6))) << "not Ethernet";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 3, 1))) << "relayed";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 11, 1))) << "flags other than broadcast";
  EXPECT_TRUE(dhcp4(edit(dhcp4_message(1), 10, 0x80))) << "the broadcast flag";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 16, 10))) << "yiaddr";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 24, 10))) << "giaddr";
  const uint8_t other_mac[6] = {0x02, 0, 0, 0, 0, 0x99};
  EXPECT_FALSE(dhcp4(dhcp4_message(1, other_mac))) << "chaddr not the frame's source MAC";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 40, 1))) << "chaddr padding";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 44, 'x'))) << "data in sname";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 235, 'x'))) << "data in file";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 239, 0))) << "no magic cookie";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 248, 0))) << "no END";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 299, 1))) << "data after END";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 244, 200))) << "an option longer than the message";
  EXPECT_FALSE(dhcp4(edit(dhcp4_message(1), 241, 2))) << "a two-byte message type";
  auto no_type = dhcp4_message(1);
  no_type[240] = 12;  // host name instead of the message type
  EXPECT_FALSE(dhcp4(no_type)) << "no message type";
  auto big = dhcp4_message(1);
  big.resize(549, 0);
  EXPECT_FALSE(dhcp4(big)) << "more than a 576-byte datagram";
  EXPECT_FALSE(dhcp4(dhcp4_message(1), /*fragment=*/true)) << "a fragment";

  const auto dhcp6 = [&](std::vector<uint8_t> payload, uint16_t sport = 546) {
    return out({.src = "fe80::2",
                .dst = "ff02::1:2",
                .l4 = L4::kUdp,
                .sport = sport,
                .dport = 547,
                .payload_bytes = std::move(payload)});
  };
  for (uint8_t type : {1, 3, 4, 5, 6, 8, 9, 11})
    EXPECT_TRUE(dhcp6(dhcp6_message(type))) << int{type};
  EXPECT_FALSE(dhcp6(dhcp6_message(2))) << "ADVERTISE: a server's message";
  EXPECT_FALSE(dhcp6(dhcp6_message(12))) << "RELAY-FORW";
  EXPECT_FALSE(dhcp6(dhcp6_message(1), 40000)) << "not from the client port";
  EXPECT_FALSE(dhcp6(edit(dhcp6_message(1), 7, 11))) << "an option longer than the message";
  auto trailing = dhcp6_message(1);
  trailing.push_back(0);
  EXPECT_FALSE(dhcp6(trailing)) << "bytes that are not an option";
  auto padded = dhcp6_message(1);
  padded.insert(padded.end(), {0, 99, 2, 0x20});  // 544 bytes of option 99
  padded.resize(padded.size() + 544, 'x');
  EXPECT_FALSE(dhcp6(padded)) << "more than 548 bytes";
}

TEST_P(TcOnlyTest, NonIpFramesAreDeniedWhileEnforcing) {
  const auto lldp = build_frame(0x88cc);
  const auto vlan_in_vlan = build_frame(0x8100);
  EXPECT_FALSE(run_out(lldp).allowed);
  set_mode(Mode::kDenylist);
  EXPECT_FALSE(run_out(lldp).allowed);
  EXPECT_FALSE(run_out(vlan_in_vlan).allowed);
  EXPECT_EQ(count(SEBPF_REASON_DENY_NOT_IP), 3U);
  set_mode(Mode::kDisabled);
  EXPECT_TRUE(run_out(lldp).allowed);
}

TEST_P(TcOnlyTest, LoopbackAddressesAreNotSpecialOnALink) {
  set_mode(Mode::kAllowlist);
  EXPECT_FALSE(out({.src = "192.0.2.2", .dst = "127.0.0.1"}));
}

TEST_P(TcOnlyTest, InterfaceWithoutAttachmentFailsClosed) {
  // ifindex 0: the kernel's default test device, loopback, which holds no
  // attachment: the guard must drop rather than pass.
  const uint32_t r = test_run(dp_->program_fd(datapath::Program::kTcGuard),
                              build_packet({.src = "192.0.2.2", .dst = "198.51.100.1"}));
  EXPECT_EQ(r, static_cast<uint32_t>(TC_ACT_SHOT));
}

INSTANTIATE_TEST_SUITE_P(Programs, TcOnlyTest, ::testing::Values(ProgramKind::kTc), kind_name);

PacketSpec dhcp_discover() {
  return {.src = "0.0.0.0",
          .dst = "255.255.255.255",
          .l4 = L4::kUdp,
          .sport = 68,
          .dport = 67,
          .payload_bytes = dhcp4_message(1)};
}

PacketSpec dhcp6_solicit() {
  return {.src = "fe80::2",
          .dst = "ff02::1:2",
          .l4 = L4::kUdp,
          .sport = 546,
          .dport = 547,
          .payload_bytes = dhcp6_message(1)};
}

// DHCP requests pass whatever the rules say, and their options carry a
// client's bytes onto the link: an attachment may send only a burst of
// them, then one per interval (here an hour: nothing refills meanwhile).
class DhcpBudgetTest : public ProgramTest {
 protected:
  void configure(datapath::Config& config) override {
    config.dhcp_request_burst = 3;
    config.dhcp_request_interval = std::chrono::hours(1);
  }
};

TEST_P(DhcpBudgetTest, OnlyABurstOfRequestsPassesPerFamily) {
  set_mode(Mode::kBlockAll);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(out(dhcp_discover())) << "request " << i;
  EXPECT_FALSE(out(dhcp_discover())) << "the budget is spent";
  EXPECT_EQ(count(SEBPF_REASON_DENY_BLOCK_ALL), 1U);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(out(dhcp6_solicit())) << "DHCPv6 has its own budget";
  EXPECT_FALSE(out(dhcp6_solicit()));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_LINK_LOCAL), 6U);

  // Past the budget a request is judged by the rules like any packet.
  set_mode(Mode::kAllowlist);
  allow("255.255.255.255/32");
  EXPECT_TRUE(out(dhcp_discover()));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_RULE), 1U);

  reattach();
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(out(dhcp_discover())) << "a new attachment starts with the whole burst";
}

class DhcpRefillTest : public ProgramTest {
 protected:
  void configure(datapath::Config& config) override {
    config.dhcp_request_burst = 1;
    config.dhcp_request_interval = std::chrono::milliseconds(1);
  }
};

TEST_P(DhcpRefillTest, TheBudgetRefillsAtItsInterval) {
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(out(dhcp_discover()));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(out(dhcp_discover())) << "an interval later the next one passes";
}

INSTANTIATE_TEST_SUITE_P(Programs, DhcpBudgetTest, ::testing::Values(ProgramKind::kTc), kind_name);
INSTANTIATE_TEST_SUITE_P(Programs, DhcpRefillTest, ::testing::Values(ProgramKind::kTc), kind_name);

class CgroupOnlyTest : public ProgramTest {};

TEST_P(CgroupOnlyTest, LoopbackAlwaysAllowed) {
  set_mode(Mode::kBlockAll);
  EXPECT_TRUE(out({.src = "127.0.0.1", .dst = "127.0.0.1"}));
  EXPECT_TRUE(out({.src = "127.0.0.1", .dst = "127.8.9.10"}));
  EXPECT_TRUE(out({.src = "::1", .dst = "::1"}));
  EXPECT_FALSE(out({.src = "::1", .dst = "::2"}));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_LOOPBACK), 3U);
}

INSTANTIATE_TEST_SUITE_P(Programs, CgroupOnlyTest, ::testing::Values(ProgramKind::kCgroupSkb),
                         kind_name);

}  // namespace
}  // namespace sebpf::testing
