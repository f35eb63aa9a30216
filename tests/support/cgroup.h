// Cgroup v2 directories for tests, found from /proc/mounts and removed on
// destruction (their processes killed first).
#pragma once

#include <sys/types.h>

#include <string>

namespace sebpf::testing {

// The cgroup v2 mount point, or empty.
std::string cgroup2_root();

class TestCgroup {
 public:
  explicit TestCgroup(const std::string& name);  // <cgroup2 root>/<name>
  // Delegated to `owner`, as systemd's Delegate=yes does: the directory
  // and its cgroup.procs, cgroup.threads and cgroup.subtree_control are
  // theirs (as are those of a cgroup they make under it).
  TestCgroup(const std::string& name, uid_t owner);
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;
  ~TestCgroup();

  const std::string& path() const { return path_; }
  // Moves the calling process into this cgroup (use in a forked child).
  bool add_self() const;

 private:
  std::string path_;
};

// Moves a process (the test process itself by default) into a cgroup for a
// scope, and back.
class ScopedCgroupMove {
 public:
  explicit ScopedCgroupMove(const std::string& cgroup_path, pid_t pid = 0);
  ScopedCgroupMove(const ScopedCgroupMove&) = delete;
  ScopedCgroupMove& operator=(const ScopedCgroupMove&) = delete;
  ~ScopedCgroupMove();
  bool ok() const { return ok_; }

 private:
  std::string original_;
  std::string pid_;  // "0": the caller
  bool ok_ = false;
};

}  // namespace sebpf::testing
