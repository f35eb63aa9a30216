// Child processes for tests: run a command, or run a function in a forked
// child (inside a cgroup or a network namespace) and collect its exit code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace sebpf::testing {

// Built with AddressSanitizer (scripts/test.sh --sanitize).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

struct CommandResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string output;  // stdout and stderr
};

// Runs argv[0] with PATH lookup, no shell.
CommandResult run_command(const std::vector<std::string>& argv);

// Runs a command and fails the current test when it exits non-zero.
void must_run(const std::vector<std::string>& argv);

// A forked child running `fn`; its return value is the exit code.
// Killed (SIGKILL) and reaped on destruction if still running. Under ASan,
// whose allocator has no fork handler, a child forked while another thread
// held one of its locks hangs at its first allocation: fork while gRPC's
// threads are idle (a connected channel, see DaemonProcess::wait_ready).
class Child {
 public:
  explicit Child(const std::function<int()>& fn);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // The exit code, or -1 if it did not exit within `timeout` or died of a
  // signal. A child still running at the timeout is overdue: where it is
  // stuck goes to stderr (and, under ASan, its stack), then it is killed.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Whether it has not exited yet (one that has is reaped).
  bool running();
  void kill_now();  // SIGKILL and reap

 private:
  pid_t pid_ = -1;
};

// A meeting point between a test and the child it forks: the child says it
// is ready (its set-up done) and waits until the test tells it to go on
// (after changing something under it). Made before the fork. The pipes
// are closed on destruction, a failed assertion included.
class Rendezvous {
 public:
  Rendezvous();
  ~Rendezvous();
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;

  // Made: both pipes exist.
  bool valid() const { return ready_[0] >= 0 && go_[0] >= 0; }
  // In the child: says it is ready, then waits to be told to go on.
  // False if the test went away.
  bool ready_then_wait();
  // In the test, after the fork: closes its copies of the child's ends, so
  // that a child that ends early is read as end of file, not waited for
  // forever.
  void forked();
  // In the test: waits for the child's ready; false if it ended first.
  bool wait_ready();
  // In the test: lets the child go on.
  bool go();

 private:
  int ready_[2] = {-1, -1};
  int go_[2] = {-1, -1};
};

// Runs fn in a child and waits for its exit code.
int run_in_child(const std::function<int()>& fn,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace sebpf::testing
