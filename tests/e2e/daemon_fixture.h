// End-to-end tests of superebpfd: the real daemon binary as a child
// process, on its own socket, state directory and pin directory, driven
// through its gRPC API (and through superebpfctl), with the topology and
// cgroup of E2eTest carrying real traffic.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "e2e_fixture.h"
#include "support/daemon_process.h"
#include "support/test_dir.h"

namespace sebpf::testing {

class DaemonE2eTest : public E2eTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts (or restarts) the daemon with the fixture's directories; the
  // binary built with the tests unless `binary` names another.
  // Waits until it answers. Under `systemd` when given (FakeSystemd).
  void start_daemon(std::vector<std::string> extra_args = {}, std::string binary = "",
                    const FakeSystemd* systemd = nullptr);
  // A script (in the test's directory) that runs the daemon built with the
  // tests with its capability bounding set changed by `change`, setpriv's
  // --bounding-set syntax ("-sys_ptrace", "-all,+bpf,+net_admin"), as a
  // service manager would run it: for start_daemon's `binary`.
  std::string daemon_with_bounding_set(const std::string& change) const;
  // Sweeps every second (sweep_interval_seconds), for what the daemon
  // does at each sweep.
  static constexpr const char* kSweepEverySecond = "sweep_interval_seconds: 1\n";
  // `yaml` written as the daemon's configuration file; its path (--config).
  std::string config_file(const std::string& yaml) const;
  std::string state_dir() const { return dir() + "/state"; }
  // Where the links of the one cgroup attached are pinned; empty if none.
  std::string cgroup_links_dir() const;
  std::string state_file() const { return state_dir() + "/state.pb"; }

  // Calls, with a deadline, returning the status.
  grpc::Status attach(const v1::AttachRequest& req, v1::Attachment* out);
  v1::Attachment attach_cgroup(const v1::Policy& policy,
                               const std::map<std::string, std::string>& metadata = {});
  v1::Attachment attach_interface(const std::string& name, const v1::Policy& policy);
  grpc::Status call_list(v1::ListResponse* out);
  grpc::Status detach(const std::string& id);
  v1::Policy get_policy(const std::string& id);

  // Every line of the daemons' log (all the test started) is a JSON
  // object: a log collector reads it so. TearDown checks it of every test.
  void expect_log_is_json_lines();

  // Polls List until `id` is gone; how long that took, or nullopt.
  std::optional<std::chrono::milliseconds> wait_detached(const std::string& id,
                                                         std::chrono::milliseconds timeout);

  // The test's own directory (the daemon's socket, state, log and
  // configuration), made by SetUp.
  const std::string& dir() const { return dir_->path(); }

  std::optional<TestDir> dir_;
  std::string pin_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::DaemonService::Stub> stub_;
};

// The daemon stopped (SIGSTOP) while it lives, so that events pile up and
// what a test does meanwhile meets no reaction. A signal is taken when
// the thread next runs: this waits until every thread has stopped.
class StoppedProcess {
 public:
  explicit StoppedProcess(pid_t pid);
  ~StoppedProcess();
  StoppedProcess(const StoppedProcess&) = delete;
  StoppedProcess& operator=(const StoppedProcess&) = delete;

 private:
  pid_t pid_;
};

// A policy from mode and CIDR rules ("198.51.100.2/32").
v1::Policy make_policy(v1::Mode mode, const std::vector<std::string>& allow,
                       const std::vector<std::string>& deny = {});

// The reason code a failed call carried in its trailing metadata.
std::string reason_of(const grpc::ClientContext& ctx);

}  // namespace sebpf::testing
