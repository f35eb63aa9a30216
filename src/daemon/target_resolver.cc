#include "daemon/target_resolver.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/in_namespace.h"
#include "common/unique_fd.h"

namespace sebpf::daemon {

Result<std::string> resolve_cgroup_path(std::string_view path, const std::string& mount) {
  if (path.empty()) return Error(Errc::kInvalidArgument, "cgroup_path: must not be empty");
  if (path.find('\0') != std::string_view::npos) {
    return Error(Errc::kInvalidArgument, "cgroup_path: contains a NUL byte");
  }
  if (path.size() >= PATH_MAX) return Error(Errc::kInvalidArgument, "cgroup_path: too long");
  const std::string joined =
      path.front() == '/' ? std::string(path) : mount + "/" + std::string(path);
  char resolved[PATH_MAX];
  if (realpath(joined.c_str(), resolved) == nullptr) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Error(Errc::kNotFound, "cgroup_path: " + joined + " does not exist");
    }
    return Error::from_errno(err, "cgroup_path: resolve " + joined);
  }
  const std::string canonical(resolved);
  if (canonical != mount && !canonical.starts_with(mount + "/")) {
    return Error(Errc::kInvalidArgument, "cgroup_path: " + canonical +
                                             " is not inside the cgroup v2 hierarchy at " + mount);
  }
  return canonical;
}

namespace {

// The cgroup v2 path ("0::<path>") in a /proc cgroup file, relative to the
// root of the reading thread's cgroup namespace; nullopt when it holds
// none.
std::optional<std::string> cgroup_v2_path(std::istream& in) {
  for (std::string line; std::getline(in, line);) {
    // v1 hierarchies have other ids.
    if (!line.starts_with("0::")) continue;
    std::string path = line.substr(3);
    if (path.empty() || path.front() != '/') return std::nullopt;
    return path;
  }
  return std::nullopt;
}

}  // namespace

Result<std::string> cgroup_path_of_pid(pid_t pid, const std::string& mount,
                                       const std::string& proc_root) {
  if (pid <= 0) return Error(Errc::kInvalidArgument, "pid: must be positive");
  const std::string file = proc_root + "/" + std::to_string(pid) + "/cgroup";
  std::ifstream in(file);
  if (!in) return Error(Errc::kNotFound, "pid: no process " + std::to_string(pid));
  const std::optional<std::string> relative = cgroup_v2_path(in);
  if (!relative) {
    return Error(Errc::kFailedPrecondition,
                 "pid: process " + std::to_string(pid) + " is in no cgroup v2 (" + file + ")");
  }
  if (relative->ends_with(" (deleted)")) {
    return Error(Errc::kNotFound,
                 "pid: process " + std::to_string(pid) + " is in a removed cgroup");
  }
  return *relative == "/" ? mount : mount + *relative;
}

Result<std::string> cgroupns_root_of(const std::string& task, const std::string& mount) {
  const UniqueFd ns(open((task + "/ns/cgroup").c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Error::from_errno(errno, "open " + task + "/ns/cgroup");
  // The thread's cgroup as seen from our namespace, then from its own:
  // the second is the first less the path to its namespace's root.
  const auto read = [&task]() -> Result<std::string> {
    std::ifstream in(task + "/cgroup");
    auto path = cgroup_v2_path(in);
    if (!path) return Error(Errc::kUnavailable, "no cgroup v2 path in " + task + "/cgroup");
    return *path;
  };
  SEBPF_ASSIGN_OR_RETURN(const std::string seen, read());
  const Result<std::string> inside = in_namespace<Result<std::string>>(
      ns.get(), CLONE_NEWCGROUP, "the cgroup namespace of " + task, read);
  if (!inside.ok()) return inside.error();
  if (*inside == "/") return seen == "/" ? mount : mount + seen;
  if (*inside == "/.." || inside->starts_with("/../")) {
    return Error(Errc::kFailedPrecondition, task + " is in a cgroup above its namespace's root");
  }
  // Both paths begin with '/': a suffix of `seen` ends at a component.
  if (!seen.ends_with(*inside)) {
    return Error(Errc::kUnavailable, task + " moved to another cgroup while looked at");
  }
  const std::string root = seen.substr(0, seen.size() - inside->size());
  return root.empty() ? mount : mount + root;
}

Status refuse_daemon_cgroup(const std::string& target, const std::string& daemon_cgroup,
                            std::string_view field) {
  if (daemon_cgroup != target && !daemon_cgroup.starts_with(target + "/")) return ok_status();
  return Error(Errc::kInvalidArgument,
               std::string(field) + ": " + target + " holds superebpfd itself (in " +
                   daemon_cgroup +
                   "): attached, it would confine the daemon's own sockets and steer the DNS "
                   "queries it forwards back into its endpoints; attach the workload's own cgroup");
}

Status validate_interface_name(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Error(Errc::kInvalidArgument,
                 "interface_name: must be 1-" + std::to_string(IFNAMSIZ - 1) + " bytes long");
  }
  if (name == "." || name == "..") {
    return Error(Errc::kInvalidArgument, "interface_name: \".\" and \"..\" are not names");
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/' || c == ':' || u <= 0x20 || u == 0x7f) {
      return Error(Errc::kInvalidArgument,
                   "interface_name: must not contain '/', ':', spaces or control characters");
    }
  }
  return ok_status();
}

namespace {

// A thread of the cgroup or, when it has none, of its descendants. Threads,
// not processes: cgroup.procs lists a process whose main thread has exited
// while others run under that thread's id, and an exited thread's
// /proc/<tid>/ns/net no longer opens; cgroup.threads lists running ones.
std::optional<pid_t> some_thread_in(const std::string& cgroup_path, int depth) {
  std::ifstream threads(cgroup_path + "/cgroup.threads");
  long tid = 0;
  if (threads >> tid && tid > 0) return static_cast<pid_t>(tid);
  if (depth == 0) return std::nullopt;
  std::error_code ec;
  for (std::filesystem::directory_iterator entry(cgroup_path, ec), end; !ec && entry != end;
       entry.increment(ec)) {
    std::error_code not_a_directory;
    if (!entry->is_directory(not_a_directory)) continue;
    if (auto found = some_thread_in(entry->path().string(), depth - 1)) return found;
  }
  return std::nullopt;
}

}  // namespace

Result<CgroupNetns> netns_of_cgroup(const std::string& cgroup_path, const std::string& proc_root) {
  struct stat ours {};
  if (stat((proc_root + "/self/ns/net").c_str(), &ours) != 0) {
    return Error::from_errno(errno, "identify the daemon's network namespace");
  }
  // A thread may exit between reading its id and opening its namespace:
  // look again a few times.
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto tid = some_thread_in(cgroup_path, 4);
    if (!tid) return CgroupNetns{};
    const std::string path = proc_root + "/" + std::to_string(*tid) + "/ns/net";
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd && errno != ENOENT && errno != ESRCH) {
      const int err = errno;
      const Error error = Error::from_errno(
          err, "open " + path + ", the network namespace of a process of " + cgroup_path);
      if (err != EACCES && err != EPERM) return error;
      return Error(error.code(), error.message() +
                                     " (the daemon needs CAP_SYS_PTRACE to open that of "
                                     "another user's process, or of one with capabilities "
                                     "it lacks)");
    }
    struct stat theirs {};
    if (!fd || fstat(fd.get(), &theirs) != 0) continue;
    if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) {
      return CgroupNetns{CgroupNetns::Where::kOurs, {}, ours.st_ino, *tid};
    }
    return CgroupNetns{CgroupNetns::Where::kForeign, std::move(fd), theirs.st_ino, *tid};
  }
  // Not taken for ours either: that would be a guess.
  // Unavailable: a transient state, which a call made again may not meet.
  return Error(Errc::kUnavailable,
               "the processes of " + cgroup_path +
                   " kept exiting before their network namespace could be opened; try again");
}

}  // namespace sebpf::daemon
