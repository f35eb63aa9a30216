// A fixture that runs the datapath's packet programs on crafted packets
// with BPF_PROG_TEST_RUN, against a real attachment: a dummy interface for
// the TC programs, a cgroup holding the test process for cgroup_skb (the
// kernel gives the test packet a socket in the caller's cgroup).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datapath/datapath.h"
#include "support/cgroup.h"
#include "support/packet_builder.h"

namespace sebpf::testing {

enum class ProgramKind { kTc, kCgroupSkb };
std::string kind_name(const ::testing::TestParamInfo<ProgramKind>& info);

struct Verdict {
  bool allowed = false;
  uint32_t retval = 0;
};

class ProgramTest : public ::testing::TestWithParam<ProgramKind> {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Load-time settings a test wants changed before the programs load.
  virtual void configure(datapath::Config& /*config*/) {}

  // The program that sees the workload's outgoing packets, and the one that
  // sees what comes back in.
  bool out(const PacketSpec& spec) { return run_out(build_packet(spec)).allowed; }
  Verdict run_out(const std::vector<uint8_t>& packet);
  void in(const PacketSpec& spec);
  // TC: the packet as sebpf_tc_guard lets it out (empty if dropped), and
  // as sebpf_tc_track passes it on to the guest.
  std::vector<uint8_t> guard_passes(const std::vector<uint8_t>& packet) {
    return guard_passes_on(ifindex_, packet);
  }
  std::vector<uint8_t> track_passes(const std::vector<uint8_t>& packet) {
    return track_passes_on(ifindex_, packet);
  }
  // The same on another attached interface (neighbour_ifindex_).
  std::vector<uint8_t> guard_passes_on(uint32_t ifindex, const std::vector<uint8_t>& packet);
  std::vector<uint8_t> track_passes_on(uint32_t ifindex, const std::vector<uint8_t>& packet);

  // Detaches the target and attaches it again: a new attachment, in the
  // slot the old one left.
  void reattach();

  // A second attachment of the same kind on the same datapath (another veth
  // end, another cgroup), for tests of what one attachment can do to
  // another; and its inbound traffic.
  void attach_neighbour();
  void in_neighbour(const std::vector<PacketSpec>& specs);

  void set_mode(datapath::Mode mode);
  void allow(const std::string& cidr, std::optional<datapath::BootClock::time_point> exp = {});
  void deny(const std::string& cidr, std::optional<datapath::BootClock::time_point> exp = {});
  datapath::Counters counters();
  uint64_t count(datapath::Reason reason);

  // The workload's own address, per family, as the programs see it.
  const char* self4() const { return "192.0.2.2"; }
  const char* self6() const { return "2001:db8::2"; }

  ProgramKind kind_ = ProgramKind::kTc;
  std::unique_ptr<datapath::Datapath> dp_;
  datapath::AttachmentKey key_;
  std::string iface_;
  uint32_t ifindex_ = 0;
  std::unique_ptr<TestCgroup> cgroup_;
  std::unique_ptr<ScopedCgroupMove> moved_;
  datapath::AttachmentKey neighbour_key_;
  std::string neighbour_iface_;
  uint32_t neighbour_ifindex_ = 0;
  std::unique_ptr<TestCgroup> neighbour_cgroup_;
};

// Runs a program once on a packet; ifindex 0 leaves the kernel's default
// device (loopback).
uint32_t test_run(int prog_fd, const std::vector<uint8_t>& packet, uint32_t ifindex = 0);
// The same, keeping the packet (and its skb->priority) as the program left
// it; `priority` is the packet's before.
struct TestRun {
  uint32_t retval = 0;
  std::vector<uint8_t> packet;
  uint32_t priority = 0;
};
TestRun test_run_keeping(int prog_fd, const std::vector<uint8_t>& packet, uint32_t ifindex,
                         uint32_t priority = 0);

datapath::Rule rule(const std::string& cidr, datapath::Action action,
                    std::optional<datapath::BootClock::time_point> expires = {});

}  // namespace sebpf::testing
