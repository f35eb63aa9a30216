#include "cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace sebpf::testing {
namespace {

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

}  // namespace

std::string cgroup2_root() {
  std::ifstream mounts("/proc/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, target, fstype;
    fields >> source >> target >> fstype;
    if (fstype == "cgroup2") return target;
  }
  return "";
}

TestCgroup::TestCgroup(const std::string& name) : path_(cgroup2_root() + "/" + name) {
  rmdir(path_.c_str());
  mkdir(path_.c_str(), 0755);
}

TestCgroup::TestCgroup(const std::string& name, uid_t owner) : TestCgroup(name) {
  // A failure shows in the owner of cgroup.procs, which tests check.
  for (const char* file : {"", "/cgroup.procs", "/cgroup.threads", "/cgroup.subtree_control"}) {
    (void)chown((path_ + file).c_str(), owner, owner);
  }
}

TestCgroup::~TestCgroup() {
  // cgroup.kill (Linux 5.14) ends every process inside; then rmdir, which
  // fails while the last of them is still exiting.
  write_file(path_ + "/cgroup.kill", "1");
  for (int i = 0; i < 200 && rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool TestCgroup::add_self() const { return write_file(path_ + "/cgroup.procs", "0"); }

ScopedCgroupMove::ScopedCgroupMove(const std::string& cgroup_path, pid_t pid)
    : pid_(std::to_string(pid)) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/cgroup") : "/proc/" + pid_ + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) original_ = cgroup2_root() + line.substr(3);
  }
  ok_ = !original_.empty() && write_file(cgroup_path + "/cgroup.procs", pid_);
}

ScopedCgroupMove::~ScopedCgroupMove() {
  if (ok_) write_file(original_ + "/cgroup.procs", pid_);
}

}  // namespace sebpf::testing
