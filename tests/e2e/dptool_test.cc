// superebpf-datapath, the CLI run by scripts/run.sh: each command is its
// own process, so this also shows state surviving between processes.
#include <filesystem>

#include "e2e_fixture.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

class DptoolTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pin_dir_ = "/sys/fs/bpf/sebpf-dptool-" + topo_->tag();
    std::filesystem::remove_all(pin_dir_);
  }
  void TearDown() override {
    if (!pin_dir_.empty()) {
      tool({"destroy"});
      std::filesystem::remove_all(pin_dir_);
    }
    E2eTest::TearDown();
  }
  CommandResult tool(std::vector<std::string> args) {
    args.insert(args.begin(), {SEBPF_DPTOOL_PATH, "--pin-dir", pin_dir_});
    return run_command(args);
  }
  std::string pin_dir_;
};

TEST_F(DptoolTest, AttachRulesAndCountersAcrossProcesses) {
  topo_->start_peer_server();
  auto attached = tool({"attach", "--cgroup", cgroup_->path(), "--mode", "allowlist"});
  ASSERT_EQ(attached.exit_code, 0) << attached.output;
  const std::string target = attached.output.substr(0, attached.output.find(' '));
  ASSERT_EQ(target.rfind("cgroup:", 0), 0U) << attached.output;
  EXPECT_EQ(tool({"allow", target, "198.51.100.2", "--ttl", "600"}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  const auto rules = tool({"rules", target});
  EXPECT_NE(rules.output.find("allow 198.51.100.2/32"), std::string::npos) << rules.output;
  EXPECT_NE(rules.output.find("expires in"), std::string::npos);
  const auto counters = tool({"counters", target});
  EXPECT_NE(counters.output.find("deny_default"), std::string::npos) << counters.output;
  const auto status = tool({"status"});
  EXPECT_NE(status.output.find("adopted pinned state, 1 attachment(s)"), std::string::npos)
      << status.output;
}

TEST_F(DptoolTest, BadInputGivesAClearErrorAndAFailingExitCode) {
  const auto bad_cidr = tool({"allow", "cgroup:1", "198.51.100.5/24"});
  EXPECT_EQ(bad_cidr.exit_code, 1);
  EXPECT_NE(bad_cidr.output.find("did you mean \"198.51.100.0/24\""), std::string::npos);
  const auto bad_target = tool({"rules", "vm7"});
  EXPECT_EQ(bad_target.exit_code, 1);
  EXPECT_NE(bad_target.output.find("cgroup:ID or ifindex:N"), std::string::npos);
  const auto unknown = tool({"rules", "cgroup:1"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("not attached"), std::string::npos);
  EXPECT_EQ(tool({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(tool({"attach", "--cgroup", "/tmp", "--interface", "lo"}).exit_code, 2);
  const auto bad_ttl = tool({"allow", "cgroup:1", "198.51.100.1", "--ttl", "-5"});
  EXPECT_EQ(bad_ttl.exit_code, 2);
  const auto not_cgroup = tool({"attach", "--cgroup", "/tmp"});
  EXPECT_EQ(not_cgroup.exit_code, 1);
  EXPECT_NE(not_cgroup.output.find("not a cgroup v2 directory"), std::string::npos);
}

}  // namespace
}  // namespace sebpf::testing
