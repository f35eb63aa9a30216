// The DNS endpoints of interface attachments take only what a guard let
// through to its own endpoint: sebpf_tc_guard tags those packets
// (skb->priority), and sebpf_endpoint_filter, on the endpoint's sockets,
// drops everything untagged. A guest of the same bridge that is not
// attached passes no guard of ours, so it cannot use an attached guest's
// endpoint (DnsE2eTest.GuestsOfABridgeAreServedOnItsAddressEachOnAPortOfItsOwn
// shows it with real sockets).
#include <linux/pkt_cls.h>

#include <cstdint>
#include <string>
#include <vector>

#include "datapath/shared_layout.h"
#include "vm_endpoint_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;
using datapath::Program;

class EndpointTagTest : public VmEndpointTest {
 protected:
  // The guest's packet through sebpf_tc_guard: passed or not, and the
  // priority it leaves with.
  TestRun guard(L4 l4, const char* dst, uint16_t dport) {
    const bool v4 = std::string(dst).find(':') == std::string::npos;
    return test_run_keeping(
        dp_->program_fd(Program::kTcGuard),
        build_packet({.src = v4 ? self4() : self6(), .dst = dst, .l4 = l4, .dport = dport}),
        ifindex_);
  }
};

TEST_P(EndpointTagTest, WhatGoesToItsOwnEndpointIsTaggedAndNothingElse) {
  for (const char* endpoint : {"198.51.100.1", "2001:db8::1"}) {
    for (const L4 l4 : {L4::kUdp, L4::kTcp}) {
      SCOPED_TRACE(std::string(endpoint) + (l4 == L4::kUdp ? " UDP" : " TCP"));
      const TestRun own = guard(l4, endpoint, kEndpointPort);
      EXPECT_EQ(own.retval, static_cast<uint32_t>(TC_ACT_UNSPEC));
      EXPECT_EQ(own.priority, SEBPF_ENDPOINT_PRIORITY);
      const TestRun turned = guard(l4, endpoint, 53);  // "Port 53 for VMs"
      EXPECT_EQ(turned.retval, static_cast<uint32_t>(TC_ACT_UNSPEC));
      EXPECT_EQ(turned.priority, SEBPF_ENDPOINT_PRIORITY);
    }
  }
  // Another endpoint's port on the same address is refused, untagged.
  const TestRun other = guard(L4::kUdp, "198.51.100.1", kEndpointPort + 1);
  EXPECT_EQ(other.retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(other.priority, 0U);
  // Anything else the guest may send leaves as it came.
  allow("203.0.113.0/24");
  const TestRun elsewhere = guard(L4::kTcp, "203.0.113.5", 443);
  EXPECT_EQ(elsewhere.retval, static_cast<uint32_t>(TC_ACT_UNSPEC));
  EXPECT_EQ(elsewhere.priority, 0U);
  const TestRun same_port_elsewhere = guard(L4::kUdp, "203.0.113.5", kEndpointPort);
  EXPECT_EQ(same_port_elsewhere.priority, 0U);
}

// A disabled attachment's endpoint still serves its guest (as a plain
// forwarder), so what goes to it is still tagged.
TEST_P(EndpointTagTest, ADisabledAttachmentsGuestStillReachesItsEndpoint) {
  set_mode(Mode::kDisabled);
  EXPECT_EQ(guard(L4::kUdp, "198.51.100.1", kEndpointPort).priority, SEBPF_ENDPOINT_PRIORITY);
}

TEST_P(EndpointTagTest, TheEndpointsFilterTakesOnlyTaggedPackets) {
  const int filter = dp_->endpoint_socket_filter();
  ASSERT_GE(filter, 0);
  const auto packet = build_packet(
      {.src = "198.51.100.5", .dst = "198.51.100.1", .l4 = L4::kUdp, .dport = kEndpointPort});
  EXPECT_GT(test_run_keeping(filter, packet, 0, SEBPF_ENDPOINT_PRIORITY).retval, 0U) << "kept";
  EXPECT_EQ(test_run_keeping(filter, packet, 0, 0).retval, 0U) << "dropped";
  EXPECT_EQ(test_run_keeping(filter, packet, 0, 7).retval, 0U) << "dropped";
}

INSTANTIATE_TEST_SUITE_P(Programs, EndpointTagTest, ::testing::Values(ProgramKind::kTc), kind_name);

}  // namespace
}  // namespace sebpf::testing
