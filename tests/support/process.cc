#include "process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
// A child stuck past its timeout gets SIGABRT first (Child::wait), and ASan
// then prints its stack before it dies; without this, SIGABRT just kills it.
extern "C" const char* __asan_default_options() { return "handle_abort=1"; }
#endif

namespace sebpf::testing {
namespace {

std::string read_proc(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Where an overdue child is stuck: its kernel stack and system call (a
// futex is a user-space lock), and under ASan its own stack. A hang that
// happens once in hundreds of runs is otherwise only "-1". True when the
// child has died (of the SIGABRT) and been reaped.
bool report_overdue(pid_t pid, std::chrono::milliseconds timeout) {
  std::fprintf(stderr,
               "child %d still running after %lld ms\n wchan: %s\n syscall: %s kernel stack:\n%s",
               static_cast<int>(pid), static_cast<long long>(timeout.count()),
               read_proc(pid, "wchan").c_str(), read_proc(pid, "syscall").c_str(),
               read_proc(pid, "stack").c_str());
  if (!kSanitized) return false;
  ::kill(pid, SIGABRT);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  CommandResult result;
  std::array<char, 4096> buf{};
  ssize_t n;
  while ((n = read(pipefd[0], buf.data(), buf.size())) > 0) {
    result.output.append(buf.data(), static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void must_run(const std::vector<std::string>& argv) {
  const CommandResult r = run_command(argv);
  std::string cmd;
  for (const auto& a : argv) cmd += a + " ";
  ASSERT_EQ(r.exit_code, 0) << cmd << "failed: " << r.output;
}

Child::Child(const std::function<int()>& fn) {
  fflush(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    // Die with the test process, so a crashed test leaves no children.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    _exit(fn());
  }
}

Child::~Child() {
  if (pid_ > 0) kill_now();
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (r < 0) {
      kill_now();
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      if (report_overdue(pid_, timeout)) {
        pid_ = -1;
      } else {
        kill_now();
      }
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Child::running() {
  if (pid_ <= 0) return false;
  if (waitpid(pid_, nullptr, WNOHANG) == 0) return true;
  pid_ = -1;
  return false;
}

void Child::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int run_in_child(const std::function<int()>& fn, std::chrono::milliseconds timeout) {
  Child child(fn);
  return child.wait(timeout);
}

Rendezvous::Rendezvous() {
  if (pipe2(ready_, O_CLOEXEC) != 0 || pipe2(go_, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
  }
}

Rendezvous::~Rendezvous() {
  for (int fd : {ready_[0], ready_[1], go_[0], go_[1]}) {
    if (fd >= 0) close(fd);
  }
}

bool Rendezvous::ready_then_wait() {
  char c = 0;
  return write(ready_[1], &c, 1) == 1 && read(go_[0], &c, 1) == 1;
}

void Rendezvous::forked() {
  for (int* fd : {&ready_[1], &go_[0]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

bool Rendezvous::wait_ready() {
  char c = 0;
  return read(ready_[0], &c, 1) == 1;
}

bool Rendezvous::go() {
  const char c = 0;
  return write(go_[1], &c, 1) == 1;
}

}  // namespace sebpf::testing
