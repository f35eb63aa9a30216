#include "daemon_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "datapath/datapath.h"
#include "support/within.h"

namespace sebpf::testing {

namespace {

std::chrono::system_clock::time_point deadline_in(std::chrono::milliseconds d) {
  return std::chrono::system_clock::now() + d;
}

// Whether every thread of `pid` is stopped (state T in its stat line).
bool all_threads_stopped(pid_t pid) {
  std::error_code ec;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t end_of_name = line.rfind(')');
    if (end_of_name == std::string::npos || line.compare(end_of_name, 3, ") T") != 0) return false;
  }
  return !ec;
}

}  // namespace

StoppedProcess::StoppedProcess(pid_t pid) : pid_(pid) {
  kill(pid_, SIGSTOP);
  EXPECT_TRUE(within(std::chrono::milliseconds(2000), [&] { return all_threads_stopped(pid_); }));
}

StoppedProcess::~StoppedProcess() { kill(pid_, SIGCONT); }

void DaemonE2eTest::SetUp() {
  E2eTest::SetUp();
  if (IsSkipped() || HasFailure()) return;
  dir_.emplace("sebpf-daemon");
  ASSERT_TRUE(dir_->made());
  // Other users must reach the socket in the peer-credential tests.
  std::filesystem::permissions(dir(), std::filesystem::perms(0755));
  pin_dir_ = "/sys/fs/bpf/sebpf-daemon-" + topo_->tag();
  std::filesystem::remove_all(pin_dir_);
}

void DaemonE2eTest::TearDown() {
  stub_.reset();
  daemon_.reset();
  // Whatever the test did, if it started a daemon.
  if (dir_ && std::filesystem::exists(dir() + "/daemon.log")) expect_log_is_json_lines();
  if (!pin_dir_.empty() && std::filesystem::exists(pin_dir_)) {
    // What a killed daemon left pinned: adopt it and remove it.
    datapath::Config config;
    config.pin_dir = pin_dir_;
    if (auto dp = datapath::Datapath::open(config); dp.ok()) (void)(*dp)->destroy();
    std::filesystem::remove_all(pin_dir_);
  }
  dir_.reset();
  E2eTest::TearDown();
}

std::string DaemonE2eTest::daemon_with_bounding_set(const std::string& change) const {
  const std::string path = dir() + "/superebpfd-bounded";
  {
    std::ofstream script(path);
    script << "#!/bin/sh\nexec setpriv --bounding-set " << change << " -- " << SEBPF_DAEMON_PATH
           << " \"$@\"\n";
  }
  EXPECT_EQ(chmod(path.c_str(), 0755), 0) << path;
  return path;
}

void DaemonE2eTest::expect_log_is_json_lines() {
  std::ifstream log(dir() + "/daemon.log");
  int lines = 0;
  for (std::string line; std::getline(log, line); ++lines) {
    EXPECT_TRUE(line.starts_with("{") && line.ends_with("}")) << "a log line: " << line;
  }
  EXPECT_GT(lines, 0) << "no log at all";
}

void DaemonE2eTest::start_daemon(std::vector<std::string> extra_args, std::string binary,
                                 const FakeSystemd* systemd) {
  stub_.reset();
  daemon_ = std::make_unique<DaemonProcess>(binary.empty() ? SEBPF_DAEMON_PATH : binary, dir(),
                                            pin_dir_, std::move(extra_args), systemd);
  stub_ = daemon_->wait_ready();
  if (!stub_) {
    // A test goes on past a helper's failed assertion: its calls must then
    // fail as the daemon's absence would, not crash the test binary, which
    // would leave its namespaces and cgroups behind for the next tests.
    stub_ = v1::DaemonService::NewStub(
        grpc::CreateChannel("unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
    FAIL() << "superebpfd did not start:\n" << daemon_->log();
  }
}

std::string DaemonE2eTest::config_file(const std::string& yaml) const {
  const std::string path = dir() + "/superebpfd.yaml";
  std::ofstream(path) << yaml;
  return path;
}

std::string DaemonE2eTest::cgroup_links_dir() const {
  std::string dir;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_dir_ + "/links", ec)) dir = e.path();
  return dir;
}

grpc::Status DaemonE2eTest::attach(const v1::AttachRequest& req, v1::Attachment* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(std::chrono::seconds(10)));
  return stub_->Attach(&ctx, req, out);
}

v1::Attachment DaemonE2eTest::attach_cgroup(const v1::Policy& policy,
                                            const std::map<std::string, std::string>& metadata) {
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  *req.mutable_policy() = policy;
  req.mutable_metadata()->insert(metadata.begin(), metadata.end());
  v1::Attachment att;
  const grpc::Status status = attach(req, &att);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return att;
}

v1::Attachment DaemonE2eTest::attach_interface(const std::string& name, const v1::Policy& policy) {
  v1::AttachRequest req;
  req.set_interface_name(name);
  *req.mutable_policy() = policy;
  v1::Attachment att;
  const grpc::Status status = attach(req, &att);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return att;
}

grpc::Status DaemonE2eTest::call_list(v1::ListResponse* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(std::chrono::seconds(5)));
  return stub_->List(&ctx, v1::ListRequest(), out);
}

grpc::Status DaemonE2eTest::detach(const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(std::chrono::seconds(10)));
  v1::DetachRequest req;
  req.set_id(id);
  v1::DetachResponse resp;
  return stub_->Detach(&ctx, req, &resp);
}

v1::Policy DaemonE2eTest::get_policy(const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(std::chrono::seconds(5)));
  v1::GetPolicyRequest req;
  req.set_id(id);
  v1::Policy policy;
  const grpc::Status status = stub_->GetPolicy(&ctx, req, &policy);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return policy;
}

std::optional<std::chrono::milliseconds> DaemonE2eTest::wait_detached(
    const std::string& id, std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < timeout) {
    v1::ListResponse list;
    if (call_list(&list).ok()) {
      bool present = false;
      for (const auto& a : list.attachments()) present |= a.id() == id;
      if (!present) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

v1::Policy make_policy(v1::Mode mode, const std::vector<std::string>& allow,
                       const std::vector<std::string>& deny) {
  v1::Policy policy;
  policy.set_mode(mode);
  policy.set_dns_mode(v1::MODE_ALLOWLIST);
  for (const auto& cidr : allow) {
    auto* rule = policy.add_cidrs();
    rule->set_cidr(cidr);
    rule->set_action(v1::ACTION_ALLOW);
  }
  for (const auto& cidr : deny) {
    auto* rule = policy.add_cidrs();
    rule->set_cidr(cidr);
    rule->set_action(v1::ACTION_DENY);
  }
  return policy;
}

std::string reason_of(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  const auto it = trailers.find("superebpf-reason");
  return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
}

}  // namespace sebpf::testing
