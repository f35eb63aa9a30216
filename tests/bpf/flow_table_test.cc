// Each attachment tracks its flows in tables of its own, so no workload can
// push another's flows out: a VM flooded with inbound datagrams, or a
// container forging them in a namespace of its own, evicts only its own
// oldest flows, and everyone else's replies keep passing.
#include <sched.h>

#include <vector>

#include "program_fixture.h"

namespace sebpf::testing {
namespace {

constexpr uint32_t kFlowsPerAttachment = 64;

class FlowTableTest : public ProgramTest {
 protected:
  // On one CPU: an LRU table frees room from the entries each CPU has
  // handed back, and entries another CPU added moments ago may not be
  // among them yet. On a real host packets come from every CPU and the
  // tables fill until they evict; here the counts must be exact.
  void SetUp() override {
    ASSERT_EQ(sched_getaffinity(0, sizeof(all_cpus_), &all_cpus_), 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    ProgramTest::SetUp();
  }
  void TearDown() override {
    ProgramTest::TearDown();
    sched_setaffinity(0, sizeof(all_cpus_), &all_cpus_);
  }
  void configure(datapath::Config& config) override {
    config.max_flows_per_attachment = kFlowsPerAttachment;
  }

  // Inbound UDP flows, each from its own port; by default eight times as
  // many as a table holds.
  std::vector<PacketSpec> flood(uint32_t flows = 8 * kFlowsPerAttachment,
                                uint16_t first_port = 20000) const {
    std::vector<PacketSpec> specs;
    for (uint32_t i = 0; i < flows; ++i) {
      specs.push_back({.src = "198.51.100.7",
                       .dst = self4(),
                       .l4 = L4::kUdp,
                       .sport = static_cast<uint16_t>(first_port + i),
                       .dport = 7000});
    }
    return specs;
  }
  // The workload's answer to one of them.
  PacketSpec answer(const PacketSpec& inbound) const {
    return {.src = self4(),
            .dst = inbound.src,
            .l4 = L4::kUdp,
            .sport = inbound.dport,
            .dport = inbound.sport};
  }

  // Someone connects to the workload's port 22 from remote_port.
  PacketSpec ssh_syn(uint16_t remote_port) const {
    return {.src = "203.0.113.50",
            .dst = self4(),
            .l4 = L4::kTcp,
            .sport = remote_port,
            .dport = 22,
            .tcp_flags = kTcpSyn};
  }
  PacketSpec ssh_answer(uint16_t remote_port) const {
    return {.src = self4(),
            .dst = "203.0.113.50",
            .l4 = L4::kTcp,
            .sport = 22,
            .dport = remote_port,
            .tcp_flags = kTcpSynAck};
  }

  cpu_set_t all_cpus_{};
};

TEST_P(FlowTableTest, AFloodOfFlowsEvictsOnlyTheFloodingAttachmentsOwn) {
  in(ssh_syn(51000));
  attach_neighbour();
  in_neighbour(flood());
  EXPECT_TRUE(out(ssh_answer(51000))) << "another attachment's flood evicted this one's flow";

  // The same flood in this attachment's own table does push a flow out:
  // the one above was large enough to have done so in a shared table.
  in(ssh_syn(51001));
  for (const PacketSpec& spec : flood()) in(spec);
  EXPECT_FALSE(out(ssh_answer(51001))) << "a table held more flows than it was sized for";
  EXPECT_TRUE(out(answer(flood().back()))) << "the newest flow of the flood";
}

// What comes from the host needs no flow: the attachment's DNS endpoint is
// always reachable, and so is loopback for a cgroup. A workload's own
// lookups, a UDP flow per query's source port, must not push out the
// flows the outside opened (an idle SSH session's).
TEST_P(FlowTableTest, AnswersFromTheHostTakeNoRoomFromTheOutsidesFlows) {
  const bool cgroup = GetParam() == ProgramKind::kCgroupSkb;
  const std::string endpoint = cgroup ? "127.0.0.1" : "192.0.2.1";
  datapath::DnsEndpoint dns;
  dns.v4 = *net::IpAddress::parse(endpoint);
  dns.port = 20007;
  ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
  in(ssh_syn(51000));
  for (uint16_t i = 0; i < 8 * kFlowsPerAttachment; ++i) {
    PacketSpec answer = {.src = endpoint,
                         .dst = cgroup ? "127.0.0.1" : self4(),
                         .l4 = L4::kUdp,
                         .sport = 20007,
                         .dport = static_cast<uint16_t>(30000 + i)};
    in(answer);
    if (cgroup) {  // and a service on loopback answering
      answer.src = "127.0.0.53";
      answer.sport = 53;
      in(answer);
    }
  }
  EXPECT_TRUE(out(ssh_answer(51000))) << "DNS answers pushed out a flow the outside opened";
}

// A slot's tables pass to the next attachment there emptied: it gets its
// whole share, not what the last one left.
TEST_P(FlowTableTest, AnAttachmentInAReusedSlotGetsItsWholeTable) {
  const auto before = flood(kFlowsPerAttachment, 20000);
  for (const PacketSpec& spec : before) in(spec);
  for (const PacketSpec& spec : before) EXPECT_TRUE(out(answer(spec)));
  reattach();
  const auto after = flood(kFlowsPerAttachment, 30000);
  for (const PacketSpec& spec : after) in(spec);
  int passed = 0;
  for (const PacketSpec& spec : after) passed += out(answer(spec)) ? 1 : 0;
  EXPECT_EQ(passed, static_cast<int>(kFlowsPerAttachment));
  EXPECT_FALSE(out(answer(before.front()))) << "a new attachment inherited a flow";
}

INSTANTIATE_TEST_SUITE_P(Programs, FlowTableTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

}  // namespace
}  // namespace sebpf::testing
