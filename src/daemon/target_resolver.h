// Turns what an Attach request names (a cgroup path, a pid, an interface
// name) into the exact target the datapath attaches, with errors that name
// the field and say what is wrong.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sebpf::daemon {

// An absolute path, or one relative to the cgroup v2 mount `mount`, made
// canonical (no "..", no symlinks) and required to lie inside the mount.
// Errc::kNotFound when it does not exist.
Result<std::string> resolve_cgroup_path(std::string_view path, const std::string& mount);

// The cgroup v2 directory the process is in, read from
// <proc_root>/<pid>/cgroup. Errc::kNotFound when there is no such process.
Result<std::string> cgroup_path_of_pid(pid_t pid, const std::string& mount,
                                       const std::string& proc_root = "/proc");

// The cgroup at the root of the cgroup namespace the thread at `task`
// (<proc>/<pid>/task/<tid>) is in, as a path under `mount` (the hierarchy
// as the daemon sees it). On a hierarchy mounted with nsdelegate, a
// process may move processes only between cgroups under its namespace's
// root, whoever owns the cgroup.procs above (bypass_check.h). An error when it cannot be told: the
// thread has exited, or moved between the two reads this takes, or was moved above its namespace's
// root.
Result<std::string> cgroupns_root_of(const std::string& task, const std::string& mount);
using CgroupnsRootOf =
    std::function<Result<std::string>(const std::string& task, const std::string& mount)>;

// Refuses `target` (a canonical cgroup path) when it holds the daemon
// itself: when the daemon's cgroup, `daemon_cgroup`, is the target or lies
// below it (the root of the hierarchy always holds it). Its programs would
// judge the daemon's own sockets, so the daemon's DNS queries to its
// upstreams would be steered back into its own endpoints and its other
// traffic held to a workload's policy. `field` names the request field in
// the error.
Status refuse_daemon_cgroup(const std::string& target, const std::string& daemon_cgroup,
                            std::string_view field);

// The network namespace the cgroup's processes send from: none yet (the
// cgroup, and its descendants 4 levels deep, hold no process), the
// daemon's own, or another, held open (for the DNS endpoint's sockets and
// the packet socket guard). An error when a process's namespace cannot be
// opened (that of another user's process, or of one holding capabilities
// the daemon lacks, needs CAP_SYS_PTRACE), or when one process after
// another exits before its namespace is opened (kUnavailable: try again):
// taken for the daemon's
// own, the workload's DNS would be served where it cannot reach it, and
// its packet sockets would go unguarded.
struct CgroupNetns {
  enum class Where { kEmpty, kOurs, kForeign } where = Where::kEmpty;
  UniqueFd fd;         // kForeign: an open /proc/<tid>/ns/net
  uint64_t inode = 0;  // kOurs, kForeign: the namespace's (nsfs inode)
  // kOurs, kForeign: the thread found in it, through whose /proc/<tid>/net
  // the namespace's state may be read (while the thread lives).
  pid_t thread = 0;
};
Result<CgroupNetns> netns_of_cgroup(const std::string& cgroup_path,
                                    const std::string& proc_root = "/proc");

// 1-15 bytes, none of them '/', ':', whitespace or control characters
// (what the kernel accepts as a name).
Status validate_interface_name(std::string_view name);

}  // namespace sebpf::daemon
