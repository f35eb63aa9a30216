// What differs between interface and cgroup attachments: ARP and non-IP
// frames exist only on links; loopback is always allowed only for cgroups.
#include <linux/pkt_cls.h>

#include "program_fixture.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;

class TcOnlyTest : public ProgramTest {};

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
