#include "support/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace sebpf::testing {

namespace {

std::chrono::system_clock::time_point deadline_in(std::chrono::milliseconds d) {
  return std::chrono::system_clock::now() + d;
}

}  // namespace

DaemonProcess::DaemonProcess(std::string binary, std::string dir, std::string pin_dir,
                             std::vector<std::string> extra_args, const FakeSystemd* systemd)
    : socket_(socket_in(dir)), log_path_(dir + "/daemon.log") {
  std::vector<std::string> args = {std::move(binary), "--socket",     socket_,
                                   "--state-dir",     dir + "/state", "--pin-dir",
                                   pin_dir,           "--log-level",  "debug"};
  // Never the host's resolver (it is not a test address): a discard port
  // on loopback, unless the test starts an upstream of its own.
  if (std::find(extra_args.begin(), extra_args.end(), "--dns-upstream") == extra_args.end()) {
    args.insert(args.end(), {"--dns-upstream", "127.0.0.1:9"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  // Everything the child needs is made before the fork; LISTEN_PID gets
  // the child's pid written into room kept for it.
  const std::vector<FakeSystemd::Passed> passed =
      systemd != nullptr ? systemd->passed() : std::vector<FakeSystemd::Passed>{};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  std::string listen_pid;
  if (systemd != nullptr) {
    env.push_back("NOTIFY_SOCKET=" + systemd->notify_socket());
    if (!passed.empty()) {
      std::string names;
      for (const auto& p : passed) names += (names.empty() ? "" : ":") + p.name;
      env.push_back("LISTEN_FDS=" + std::to_string(passed.size()));
      env.push_back("LISTEN_FDNAMES=" + names);
      listen_pid = "LISTEN_PID=" + std::string(16, '\0');
    }
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  if (!listen_pid.empty()) envp.push_back(listen_pid.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    const int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    // The passed descriptors go to 3, 4, ... (SD_LISTEN_FDS_START), by way
    // of numbers above them, so that none is overwritten before it moved.
    constexpr int kFirstPassed = 3;
    const int above = kFirstPassed + static_cast<int>(passed.size());
    std::array<int, 512> moved{};
    for (size_t i = 0; i < passed.size() && i < moved.size(); ++i) {
      moved[i] = fcntl(passed[i].fd, F_DUPFD_CLOEXEC, above);
    }
    for (size_t i = 0; i < passed.size() && i < moved.size(); ++i) {
      dup2(moved[i], kFirstPassed + static_cast<int>(i));  // not close-on-exec
    }
    if (!listen_pid.empty()) {
      std::snprintf(listen_pid.data() + 11, 16, "%d", static_cast<int>(getpid()));
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0 && terminate() == -1) kill9();
}

std::unique_ptr<v1::DaemonService::Stub> DaemonProcess::wait_ready(
    std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return nullptr;
    }
    if (std::filesystem::exists(socket_)) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline_in(std::chrono::milliseconds(500)));
      v1::ListResponse resp;
      // A channel per try: one that failed to connect waits out gRPC's
      // reconnect backoff (a second) before it tries again.
      auto stub = v1::DaemonService::NewStub(
          grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
      if (stub->List(&ctx, v1::ListRequest(), &resp).ok()) return stub;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return nullptr;
}

int DaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

int DaemonProcess::terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  return wait_exit(std::chrono::seconds(10));
}

void DaemonProcess::kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string DaemonProcess::log() const {
  std::ifstream in(log_path_);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool DaemonProcess::wait_for_log(const std::string& text, size_t times,
                                 std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string now = log();
    size_t found = 0;
    for (size_t at = now.find(text); at != std::string::npos; at = now.find(text, at + 1)) ++found;
    if (found >= times) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace sebpf::testing
