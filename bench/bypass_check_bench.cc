// us per bypass check (bypass_check.h: what each Attach, Get and List does
// for every cgroup attachment it returns) on a real cgroup, by how many
// processes and threads it holds, each thread's status and namespaces
// read; and with a delegated cgroup above whose processes are in cgroup
// namespaces of their own, each namespace's root looked up (a short-lived
// thread enters it), against the same processes in the host's.
//
//   sudo build/bench/sebpf_bypass_check_bench [calls]
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon/bypass_check.h"
#include "support/cgroup.h"
#include "support/process.h"

namespace {

using sebpf::testing::Child;
using sebpf::testing::TestCgroup;

// `processes` processes of `threads` threads each in `cgroup` (each in a
// cgroup namespace of its own, made there, when `own_cgroupns`; run as
// `uid` when not 0), there until the returned children are dropped.
std::vector<std::unique_ptr<Child>> populate(const TestCgroup& cgroup, int processes, int threads,
                                             bool own_cgroupns, uid_t uid = 0) {
  std::vector<std::unique_ptr<Child>> out;
  for (int p = 0; p < processes; ++p) {
    int ready[2];
    if (pipe(ready) != 0) std::abort();
    out.push_back(std::make_unique<Child>([&] {
      close(ready[0]);
      if (!cgroup.add_self() || (own_cgroupns && unshare(CLONE_NEWCGROUP) != 0)) return 81;
      if (uid != 0 && (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)) return 83;
      for (int t = 1; t < threads; ++t) std::thread([] { pause(); }).detach();
      if (write(ready[1], "x", 1) != 1) return 82;
      pause();
      return 0;
    }));
    close(ready[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1) std::abort();
    close(ready[0]);
  }
  return out;
}

// The median of `calls` checks of `cgroup`, in us; the warnings' count is
// printed, so that the check is seen to do what it is timed for.
void measure(const char* what, const TestCgroup& cgroup, const std::string& mount, int calls) {
  std::vector<double> us;
  size_t warnings = 0;
  for (int i = 0; i < calls; ++i) {
    const auto start = std::chrono::steady_clock::now();
    warnings = sebpf::daemon::cgroup_bypass_warnings(cgroup.path(), 0, mount).size();
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
    us.push_back(took.count());
  }
  std::sort(us.begin(), us.end());
  std::printf("%-58s p50 %8.1f us  p90 %8.1f us  (%zu warnings)\n", what, us[us.size() / 2],
              us[us.size() * 9 / 10], warnings);
}

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 200;
  const std::string mount = sebpf::testing::cgroup2_root();
  if (geteuid() != 0 || mount.empty() || calls <= 0) {
    std::fprintf(stderr, "usage: sudo %s [calls >= 1] (needs root and cgroup v2)\n", argv[0]);
    return 2;
  }
  std::printf("# us per bypass check of one cgroup, %d calls each\n", calls);
  const struct {
    const char* what;
    int processes, threads;
  } shapes[] = {{"1 process of 1 thread", 1, 1},
                {"10 processes of 1 thread", 10, 1},
                {"1 process of 100 threads", 1, 100},
                {"10 processes of 10 threads", 10, 10}};
  for (const auto& shape : shapes) {
    const TestCgroup cgroup("sebpf-bypass-bench");
    const auto children = populate(cgroup, shape.processes, shape.threads, false);
    measure(shape.what, cgroup, mount, calls);
  }
  // Delegated to the user the processes run as: each is named.
  for (const bool own_cgroupns : {false, true}) {
    const TestCgroup delegated("sebpf-bypass-bench", 65534);
    const TestCgroup cgroup("sebpf-bypass-bench/agent", 65534);
    const auto children = populate(cgroup, 10, 1, own_cgroupns, 65534);
    measure(own_cgroupns ? "delegated above, 10 processes, a cgroup namespace each"
                         : "delegated above, 10 processes, the host's cgroup namespace",
            cgroup, mount, calls);
  }
  return 0;
}
