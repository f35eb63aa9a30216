// A superebpfd process for tests and benchmarks: the real binary as a
// child, with its own socket, state directory and pin directory, and a
// gRPC stub to drive it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "superebpf/v1/daemon.grpc.pb.h"
#include "support/fake_systemd.h"

namespace sebpf::testing {

namespace v1 = ::superebpf::v1;

// One superebpfd process. Stopped (SIGTERM, then SIGKILL) on destruction.
class DaemonProcess {
 public:
  // `binary` is the superebpfd to run; its log goes to <dir>/daemon.log.
  // `systemd`: run under it, as systemd runs a service (NOTIFY_SOCKET, and
  // what it passes: LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID); null: not.
  DaemonProcess(std::string binary, std::string dir, std::string pin_dir,
                std::vector<std::string> extra_args = {}, const FakeSystemd* systemd = nullptr);
  // The API socket's path of a daemon run in `dir`.
  static std::string socket_in(const std::string& dir) { return dir + "/superebpfd.sock"; }
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Waits until the API answers, and returns the stub that got the answer;
  // null if the daemon exited or the timeout passed (its log says why).
  // Keep that stub: its channel is connected. Dropping it for a fresh one
  // leaves gRPC's threads tearing one channel down and connecting the
  // other while the test goes on, and a child forked then (Child) can
  // inherit an allocator lock one of those threads held: under ASan, whose
  // allocator has no fork handler, its first allocation then hangs.
  std::unique_ptr<v1::DaemonService::Stub> wait_ready(
      std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // SIGTERM and wait: the exit code, or -1.
  int terminate();
  void kill9();
  // The exit code once it has exited by itself, or -1 after the timeout.
  int wait_exit(std::chrono::milliseconds timeout);

  pid_t pid() const { return pid_; }
  const std::string& socket() const { return socket_; }
  std::string log() const;
  // Whether the log comes to hold `text` `times` times within `timeout`.
  bool wait_for_log(const std::string& text, size_t times, std::chrono::milliseconds timeout) const;

 private:
  std::string socket_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace sebpf::testing
