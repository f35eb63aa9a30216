#include "program_fixture.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <unistd.h>

#include <utility>

#include "support/privileges.h"
#include "support/process.h"

namespace sebpf::testing {

using datapath::Action;
using datapath::Mode;
using datapath::Program;

std::string kind_name(const ::testing::TestParamInfo<ProgramKind>& info) {
  return info.param == ProgramKind::kTc ? "Tc" : "CgroupSkb";
}

uint32_t test_run(int prog_fd, const std::vector<uint8_t>& packet, uint32_t ifindex) {
  return test_run_keeping(prog_fd, packet, ifindex).retval;
}

TestRun test_run_keeping(int prog_fd, const std::vector<uint8_t>& packet, uint32_t ifindex,
                         uint32_t priority) {
  __sk_buff ctx{};
  ctx.ifindex = ifindex;
  ctx.priority = priority;
  __sk_buff ctx_out{};
  TestRun run;
  run.packet.resize(packet.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.data(), .data_out = run.packet.data(),
              .data_size_in = static_cast<__u32>(packet.size()),
              .data_size_out = static_cast<__u32>(run.packet.size()), .ctx_in = &ctx,
              .ctx_out = &ctx_out, .ctx_size_in = sizeof(ctx), .ctx_size_out = sizeof(ctx_out),
              .repeat = 1);
  const int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN failed: " << strerror(errno);
  run.retval = opts.retval;
  run.packet.resize(opts.data_size_out);
  run.priority = ctx_out.priority;
  return run;
}

datapath::Rule rule(const std::string& cidr, Action action,
                    std::optional<datapath::BootClock::time_point> expires) {
  auto prefix = net::IpPrefix::parse(cidr);
  EXPECT_TRUE(prefix.ok()) << cidr;
  return {*prefix, action, expires};
}

namespace {

// A veth end (the dummy driver is not in every kernel), never brought up.
uint32_t make_interface(const std::string& name, const std::string& peer) {
  run_command({"ip", "link", "del", name});
  must_run({"ip", "link", "add", name, "type", "veth", "peer", "name", peer});
  return if_nametoindex(name.c_str());
}

// Every attachment of these tests starts as an allowlist without rules.
datapath::AttachOptions allowlist() {
  datapath::AttachOptions options;
  options.mode = Mode::kAllowlist;
  return options;
}

}  // namespace

void ProgramTest::SetUp() {
  SEBPF_REQUIRE_PRIVILEGES();
  kind_ = GetParam();
  datapath::Config config;
  config.pin_dir = "";  // private: ends with the test
  configure(config);
  auto dp = datapath::Datapath::open(config);
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  dp_ = std::move(*dp);
  const datapath::AttachOptions options = allowlist();
  const std::string tag = std::to_string(getpid() % 100000);
  if (kind_ == ProgramKind::kTc) {
    iface_ = "sebpft" + tag;
    ifindex_ = make_interface(iface_, "sebpfu" + tag);
    auto att = dp_->attach_interface(iface_, options);
    ASSERT_TRUE(att.ok()) << att.error().message();
    key_ = att->key;
  } else {
    cgroup_ = std::make_unique<TestCgroup>("sebpf-bpftest-" + tag);
    auto att = dp_->attach_cgroup(cgroup_->path(), options);
    ASSERT_TRUE(att.ok()) << att.error().message();
    key_ = att->key;
    moved_ = std::make_unique<ScopedCgroupMove>(cgroup_->path());
    ASSERT_TRUE(moved_->ok()) << "could not move the test process into " << cgroup_->path();
  }
}

void ProgramTest::TearDown() {
  moved_.reset();
  dp_.reset();  // a private datapath detaches everything
  cgroup_.reset();
  neighbour_cgroup_.reset();
  if (!iface_.empty()) run_command({"ip", "link", "del", iface_});
  if (!neighbour_iface_.empty()) run_command({"ip", "link", "del", neighbour_iface_});
}

void ProgramTest::reattach() {
  ASSERT_TRUE(dp_->detach(key_).ok());
  const datapath::AttachOptions options = allowlist();
  auto att = kind_ == ProgramKind::kTc ? dp_->attach_interface(iface_, options)
                                       : dp_->attach_cgroup(cgroup_->path(), options);
  ASSERT_TRUE(att.ok()) << att.error().message();
  key_ = att->key;
}

void ProgramTest::attach_neighbour() {
  const datapath::AttachOptions options = allowlist();
  const std::string tag = std::to_string(getpid() % 100000);
  auto att = [&] {
    if (kind_ == ProgramKind::kTc) {
      neighbour_iface_ = "sebpfn" + tag;
      neighbour_ifindex_ = make_interface(neighbour_iface_, "sebpfm" + tag);
      return dp_->attach_interface(neighbour_iface_, options);
    }
    neighbour_cgroup_ = std::make_unique<TestCgroup>("sebpf-bpftest-neighbour-" + tag);
    return dp_->attach_cgroup(neighbour_cgroup_->path(), options);
  }();
  ASSERT_TRUE(att.ok()) << att.error().message();
  neighbour_key_ = att->key;
}

void ProgramTest::in_neighbour(const std::vector<PacketSpec>& specs) {
  if (kind_ == ProgramKind::kTc) {
    for (const PacketSpec& spec : specs) {
      EXPECT_EQ(
          test_run(dp_->program_fd(Program::kTcTrack), build_packet(spec), neighbour_ifindex_),
          static_cast<uint32_t>(TC_ACT_UNSPEC));
    }
    return;
  }
  // The kernel gives the test packet a socket in the caller's cgroup.
  ScopedCgroupMove into(neighbour_cgroup_->path());
  ASSERT_TRUE(into.ok()) << "could not move the test process into " << neighbour_cgroup_->path();
  for (const PacketSpec& spec : specs) {
    EXPECT_EQ(test_run(dp_->program_fd(Program::kCgroupIngress), build_packet(spec)), 1U);
  }
}

Verdict ProgramTest::run_out(const std::vector<uint8_t>& packet) {
  if (kind_ == ProgramKind::kTc) {
    const uint32_t r = test_run(dp_->program_fd(Program::kTcGuard), packet, ifindex_);
    return {r == static_cast<uint32_t>(TC_ACT_UNSPEC), r};
  }
  const uint32_t r = test_run(dp_->program_fd(Program::kCgroupEgress), packet);
  return {r == 1, r};
}

std::vector<uint8_t> ProgramTest::guard_passes_on(uint32_t ifindex,
                                                  const std::vector<uint8_t>& packet) {
  TestRun run = test_run_keeping(dp_->program_fd(Program::kTcGuard), packet, ifindex);
  if (run.retval != static_cast<uint32_t>(TC_ACT_UNSPEC)) return {};
  return std::move(run.packet);
}

std::vector<uint8_t> ProgramTest::track_passes_on(uint32_t ifindex,
                                                  const std::vector<uint8_t>& packet) {
  TestRun run = test_run_keeping(dp_->program_fd(Program::kTcTrack), packet, ifindex);
  EXPECT_EQ(run.retval, static_cast<uint32_t>(TC_ACT_UNSPEC));
  return std::move(run.packet);
}

void ProgramTest::in(const PacketSpec& spec) {
  const auto packet = build_packet(spec);
  if (kind_ == ProgramKind::kTc) {
    EXPECT_EQ(test_run(dp_->program_fd(Program::kTcTrack), packet, ifindex_),
              static_cast<uint32_t>(TC_ACT_UNSPEC));
  } else {
    EXPECT_EQ(test_run(dp_->program_fd(Program::kCgroupIngress), packet), 1U);
  }
}

void ProgramTest::set_mode(Mode mode) {
  auto s = dp_->set_mode(key_, mode);
  ASSERT_TRUE(s.ok()) << s.error().message();
}

void ProgramTest::allow(const std::string& cidr,
                        std::optional<datapath::BootClock::time_point> exp) {
  auto s = dp_->add_rule(key_, rule(cidr, Action::kAllow, exp));
  ASSERT_TRUE(s.ok()) << s.error().message();
}

void ProgramTest::deny(const std::string& cidr,
                       std::optional<datapath::BootClock::time_point> exp) {
  auto s = dp_->add_rule(key_, rule(cidr, Action::kDeny, exp));
  ASSERT_TRUE(s.ok()) << s.error().message();
}

datapath::Counters ProgramTest::counters() {
  auto c = dp_->counters(key_);
  EXPECT_TRUE(c.ok()) << c.error().message();
  return c.ok() ? *c : datapath::Counters{};
}

uint64_t ProgramTest::count(datapath::Reason reason) {
  return counters().get(SEBPF_HOOK_PACKET, reason);
}

}  // namespace sebpf::testing
