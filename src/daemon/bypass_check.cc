#include "daemon/bypass_check.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

#include "common/unique_fd.h"
#include "datapath/system.h"

namespace sebpf::daemon {
namespace {

// Processes named in a warning; the rest are counted.
constexpr size_t kPidsNamed = 5;

struct Bypass {
  int capability;
  bool held_by_packet_filter;  // no bypass inside the guarded namespace
  const char* what;            // what a process holding it may do
  const char* remedy;
};

constexpr Bypass kBypasses[] = {
    {CAP_NET_RAW, true,
     "may open packet sockets (CAP_NET_RAW in the bounding set) in a network namespace whose "
     "interfaces the packet socket filter is not on (the attachment's processes are in more "
     "than one, or the daemon has yet to follow them into a new one: within seconds, or at its "
     "next sweep)",
     "Run the cgroup's processes in one network namespace, or drop the capability "
     "(e.g. --cap-drop NET_RAW)"},
    {CAP_NET_ADMIN, false,
     "may reconfigure their network namespace (CAP_NET_ADMIN in the bounding set): forwarding, NAT "
     "or a bridge of their own sends packets out in a form no cgroup program judged",
     "Drop the capability (e.g. --cap-drop NET_ADMIN) or attach the host side of the container's "
     "interface, which it cannot reconfigure"},
};

void pids_in(const std::filesystem::path& dir, std::vector<std::string>& out) {
  std::ifstream procs(dir / "cgroup.procs");
  std::string pid;
  while (procs >> pid) out.push_back(pid);
}

// The nsfs inode at `path` (relative to `dir`, a descriptor); 0 when it
// cannot be told (the thread exited).
uint64_t inode_of(int dir, const char* path) {
  struct stat ns {};
  return fstatat(dir, path, &ns, 0) == 0 ? ns.st_ino : 0;
}

// Which of a thread's namespaces the check needs: each costs a lookup in
// /proc, and a cgroup may hold thousands of threads.
struct Needs {
  // The namespace the packet socket filter holds (0: none, and then a
  // thread's network namespace decides nothing).
  uint64_t guarded_netns;
  // A cgroup above is delegated: a thread's cgroup and mount namespaces
  // decide which of them it reaches.
  bool delegations;
};

// What the check reads of one thread. Capabilities, credentials and
// namespaces are each thread's own: a thread that kept what its main
// thread gave up acts with it, and may exec with it.
struct ThreadStatus {
  std::string task;  // <proc>/<pid>/task/<tid>
  uint64_t bounding_set = 0;
  std::vector<uid_t> uids;  // real, effective, saved, filesystem
  std::vector<gid_t> gids;  // the same four, then the supplementary groups
  // nsfs inodes, 0 when they cannot be told or are not needed.
  uint64_t netns = 0;
  uint64_t cgroupns = 0;
  uint64_t mntns = 0;
};

// The whole of a small file, read from `dir`; nullopt when it cannot be.
std::optional<std::string> read_whole(int dir, const char* name) {
  const UniqueFd fd(openat(dir, name, O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char chunk[4096];
  for (ssize_t n; (n = read(fd.get(), chunk, sizeof chunk)) != 0;) {
    if (n < 0) return std::nullopt;
    out.append(chunk, static_cast<size_t>(n));
  }
  return out;
}

template <typename Id>
void append_ids(std::string_view fields, std::vector<Id>& out) {
  const char* p = fields.data();
  const char* end = p + fields.size();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    Id id;
    const auto [next, ec] = std::from_chars(p, end, id);
    if (ec != std::errc()) return;
    out.push_back(id);
    p = next;
  }
}

// One read of the thread `tid`'s status, and the namespaces `needs` asks
// for; nullopt when it cannot be read, or the thread has ended: a zombie
// acts no more (a main thread that exited while others run stays listed
// as one, its namespaces gone). `tasks` is <proc>/<pid>/task, open as
// `tasks_dir`: each file is opened from it, one lookup in /proc fewer.
std::optional<ThreadStatus> thread_status(int tasks_dir, const std::string& tasks,
                                          const std::string& tid, const Needs& needs) {
  const auto status = read_whole(tasks_dir, (tid + "/status").c_str());
  if (!status) return std::nullopt;
  ThreadStatus out;
  out.task = tasks + "/" + tid;
  bool bounding_set_read = false;
  for (std::string_view rest = *status; !rest.empty();) {
    const size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    const std::string_view value = line.substr(std::min(line.find(':') + 1, line.size()));
    if (line.starts_with("State:")) {
      const size_t state = value.find_first_not_of(" \t");
      if (state != std::string_view::npos && (value[state] == 'Z' || value[state] == 'X')) {
        return std::nullopt;
      }
    } else if (line.starts_with("CapBnd:")) {
      const auto set = datapath::parse_capability_set(value);
      bounding_set_read = set.has_value();
      out.bounding_set = set.value_or(0);
    } else if (line.starts_with("Uid:")) {
      append_ids(value, out.uids);
    } else if (line.starts_with("Gid:") || line.starts_with("Groups:")) {
      append_ids(value, out.gids);
    }
  }
  if (!bounding_set_read) return std::nullopt;
  // Where it is matters only for what the packet socket filter holds there.
  const auto held_there = [&](const Bypass& b) {
    return b.held_by_packet_filter && (out.bounding_set >> b.capability & 1);
  };
  if (needs.guarded_netns != 0 &&
      std::any_of(std::begin(kBypasses), std::end(kBypasses), held_there)) {
    out.netns = inode_of(tasks_dir, (tid + "/ns/net").c_str());
  }
  if (needs.delegations) {
    out.cgroupns = inode_of(tasks_dir, (tid + "/ns/cgroup").c_str());
    out.mntns = inode_of(tasks_dir, (tid + "/ns/mnt").c_str());
  }
  return out;
}

// A process and its threads that run; none when it has gone.
struct Process {
  std::string pid;
  std::vector<ThreadStatus> threads;
};
Process process_of(const std::string& proc_root, const std::string& pid, const Needs& needs) {
  Process out{pid, {}};
  const std::string tasks = proc_root + "/" + pid + "/task";
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(tasks.c_str()), closedir);
  if (!dir) return out;
  while (const dirent* entry = readdir(dir.get())) {
    if (entry->d_name[0] == '.') continue;
    if (auto status = thread_status(dirfd(dir.get()), tasks, entry->d_name, needs)) {
      out.threads.push_back(std::move(*status));
    }
  }
  return out;
}

// Who, besides root, may write a cgroup's cgroup.procs, and so move its
// processes between any two cgroups under it: a user other than root who
// owns it (delegated to them), the members of its group if it is
// group-writable, anyone if it is writable by all.
struct Mover {
  enum class Kind { kUser, kGroup, kAnyone } kind;
  uint32_t id;  // uid, gid, or 0
  auto operator<=>(const Mover&) const = default;

  bool includes(const ThreadStatus& thread) const {
    const auto has = [this](const auto& ids) {
      return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    // Root's threads (files are written as the filesystem uid, the
    // fourth) may write it whatever its mode; the check names those of
    // other users.
    if (kind != Kind::kUser && thread.uids.size() == 4 && thread.uids[3] == 0) return false;
    switch (kind) {
      case Kind::kUser:
        return has(thread.uids);
      case Kind::kGroup:
        return has(thread.gids);
      case Kind::kAnyone:
        return true;
    }
    return false;
  }
};

// A cgroup above the attached one whose cgroup.procs `mover` may write.
struct Delegation {
  std::string dir;
  Mover mover;
};

// Those who may write the cgroup.procs of a cgroup above `cgroup_dir`
// (below the hierarchy's root at `mount`), from the innermost such cgroup
// to the outermost.
std::vector<Delegation> delegations_above(const std::string& cgroup_dir, const std::string& mount) {
  std::vector<Delegation> out;
  for (std::filesystem::path dir = std::filesystem::path(cgroup_dir).parent_path();
       dir.string().starts_with(mount + "/"); dir = dir.parent_path()) {
    struct stat procs {};
    if (stat((dir / "cgroup.procs").c_str(), &procs) != 0) continue;
    if (procs.st_uid != 0) out.push_back({dir.string(), {Mover::Kind::kUser, procs.st_uid}});
    if (procs.st_mode & S_IWGRP) out.push_back({dir.string(), {Mover::Kind::kGroup, procs.st_gid}});
    if (procs.st_mode & S_IWOTH) out.push_back({dir.string(), {Mover::Kind::kAnyone, 0}});
  }
  return out;
}

// What holds a workload in the attached cgroup whoever may write above it
// (the Reach below).
constexpr const char* kOwnCgroupns =
    "in a cgroup namespace of its own made at the attached cgroup (which holds it there where the "
    "hierarchy is mounted with nsdelegate, or where the only cgroup v2 mount it sees is its own)";

// Why `mover` may write `dir`'s cgroup.procs, and what to do about it.
std::string mover_reason(const Mover& mover, const std::string& dir) {
  const std::string attach = "Attach " + dir + " instead, or ";
  switch (mover.kind) {
    case Mover::Kind::kUser:
      return "they run as uid " + std::to_string(mover.id) + ", to whom " + dir +
             " is delegated (that user owns its cgroup.procs), so they may move into any cgroup "
             "under it, attached or not. " +
             attach + "run the workload as another user or " + kOwnCgroupns;
    case Mover::Kind::kGroup:
      return "they run with gid " + std::to_string(mover.id) + ", which may write " + dir +
             "/cgroup.procs (it is group-writable), so they may move into any cgroup under it, "
             "attached or not. " +
             attach +
             "take that group's write permission away (chmod g-w), or run the workload "
             "without the group or " +
             kOwnCgroupns;
    case Mover::Kind::kAnyone:
      return "anyone may write " + dir +
             "/cgroup.procs (it is writable by all), so they may move into any cgroup under it, "
             "attached or not. Take that permission away (chmod o-w), or run the workload " +
             kOwnCgroupns;
  }
  return "";
}

std::string named(const std::vector<std::string>& pids) {
  std::string list = "process" + std::string(pids.size() == 1 ? " " : "es ");
  for (size_t i = 0; i < pids.size() && i < kPidsNamed; ++i) list += (i ? ", " : "") + pids[i];
  if (pids.size() > kPidsNamed)
    list += " and " + std::to_string(pids.size() - kPidsNamed) + " more";
  return list;
}

bool at_or_under(const std::string& dir, const std::string& root) {
  return dir == root || dir.starts_with(root + "/");
}

// The cgroups each thread may move processes between: those under one of
// the roots `of` returns. The kernel lets a process move others between
// two cgroups when it may write the cgroup.procs of a cgroup above both,
// and, on a hierarchy mounted with nsdelegate, only under the root of its
// cgroup namespace. Without nsdelegate it is held only by what it sees:
// the cgroup v2 mounts in its mount namespace, and one it may make, which
// is rooted at its cgroup namespace's root.
class Reach {
 public:
  Reach(const std::string& mount, const std::string& proc_root, const CgroupnsRootOf& root_of)
      : mount_(mount),
        root_of_(root_of),
        own_cgroupns_(inode_of(AT_FDCWD, (proc_root + "/self/ns/cgroup").c_str())),
        ns_delegate_(ns_delegate(proc_root + "/self/mountinfo", mount)) {}

  // Unknown, the whole hierarchy: named rather than missed.
  const std::vector<std::string>& of(const ThreadStatus& thread) {
    if (own_cgroupns_ == 0 || thread.cgroupns == own_cgroupns_) return whole_;
    auto [it, added] = reach_.try_emplace({thread.cgroupns, ns_delegate_ ? 0 : thread.mntns});
    if (!added) return it->second;
    auto root = root_of_(thread.task, mount_);
    if (!root.ok()) return it->second = whole_;
    it->second.push_back(*root);
    if (ns_delegate_) return it->second;
    const auto mounts = datapath::cgroup2_mounts(thread.task + "/mountinfo");
    if (!mounts || thread.mntns == 0) return it->second = whole_;
    for (const datapath::Cgroup2Mount& m : *mounts) {
      // Shown relative to our namespace's root, as the daemon's paths are;
      // one above it is not ours to name.
      if (m.root == "/.." || m.root.starts_with("/../")) return it->second = whole_;
      it->second.push_back(m.root == "/" ? mount_ : mount_ + m.root);
    }
    return it->second;
  }

 private:
  // Whether the hierarchy mounted at `mount` is mounted with nsdelegate;
  // false when it cannot be told (each thread's mounts are then read too,
  // which can only widen what it reaches).
  static bool ns_delegate(const std::string& mountinfo, const std::string& mount) {
    const auto mounts = datapath::cgroup2_mounts(mountinfo);
    if (!mounts) return false;
    return std::any_of(mounts->begin(), mounts->end(), [&](const datapath::Cgroup2Mount& m) {
      return m.mount_point == mount && m.ns_delegate;
    });
  }

  const std::string& mount_;
  const CgroupnsRootOf& root_of_;
  const uint64_t own_cgroupns_;  // 0: unknown, every thread is taken to share it
  const bool ns_delegate_;
  const std::vector<std::string> whole_{mount_};
  // By cgroup namespace and (without nsdelegate) mount namespace.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<std::string>> reach_;
};

// One warning per mover some of `processes` are and the outermost cgroup
// of `delegations` (above the attached one) whose cgroup.procs it may
// write, of those the process reaches (a container's cgroup namespace, made at its cgroup,
// holds it there).
std::vector<std::string> delegation_warnings(const std::vector<Process>& processes,
                                             const std::vector<Delegation>& delegations,
                                             const std::string& mount, const std::string& proc_root,
                                             const CgroupnsRootOf& root_of) {
  if (delegations.empty()) return {};
  Reach reach_of(mount, proc_root, root_of);
  std::map<std::pair<Mover, std::string>, std::vector<std::string>> movers;
  for (const Process& process : processes) {
    for (const ThreadStatus& thread : process.threads) {
      if (thread.cgroupns == 0) continue;  // exited meanwhile
      const std::vector<std::string>& roots = reach_of.of(thread);
      // Each mover's outermost cgroup this thread reaches.
      std::map<Mover, std::string> reach;
      for (const Delegation& d : delegations) {
        const auto reaches = [&](const std::string& root) { return at_or_under(d.dir, root); };
        if (std::any_of(roots.begin(), roots.end(), reaches)) reach[d.mover] = d.dir;
      }
      // Named once, under the first reason (users, then groups, then
      // anyone).
      const auto first = std::find_if(reach.begin(), reach.end(),
                                      [&](const auto& r) { return r.first.includes(thread); });
      if (first == reach.end()) continue;
      movers[*first].push_back(process.pid);
      break;
    }
  }
  std::vector<std::string> warnings;
  for (const auto& [mover, who] : movers) {
    warnings.push_back(named(who) + " may move themselves out of this attachment: " +
                       mover_reason(mover.first, mover.second));
  }
  return warnings;
}

std::string warning(const Bypass& bypass, const std::vector<std::string>& pids) {
  return named(pids) + " " + bypass.what + ": they can send past this attachment. " + bypass.remedy;
}

}  // namespace

std::vector<std::string> cgroup_bypass_warnings(const std::string& cgroup_dir,
                                                uint64_t guarded_netns, const std::string& mount,
                                                const std::string& proc_root,
                                                const CgroupnsRootOf& cgroupns_root) {
  namespace fs = std::filesystem;
  std::vector<std::string> pids;
  pids_in(cgroup_dir, pids);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(cgroup_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory(ec)) pids_in(it->path(), pids);
  }
  const std::vector<Delegation> delegations = delegations_above(cgroup_dir, mount);
  const Needs needs{guarded_netns, !delegations.empty()};
  std::vector<Process> processes;  // those still there
  std::vector<std::string> holders[std::size(kBypasses)];
  for (const std::string& pid : pids) {
    Process process = process_of(proc_root, pid, needs);
    if (process.threads.empty()) continue;
    for (size_t i = 0; i < std::size(kBypasses); ++i) {
      const auto holds = [&](const ThreadStatus& thread) {
        const bool in_guarded_netns = guarded_netns != 0 && thread.netns == guarded_netns;
        return !(kBypasses[i].held_by_packet_filter && in_guarded_netns) &&
               (thread.bounding_set >> kBypasses[i].capability & 1);
      };
      if (std::any_of(process.threads.begin(), process.threads.end(), holds)) {
        holders[i].push_back(pid);
      }
    }
    processes.push_back(std::move(process));
  }
  std::vector<std::string> warnings;
  for (size_t i = 0; i < std::size(kBypasses); ++i) {
    if (!holders[i].empty()) warnings.push_back(warning(kBypasses[i], holders[i]));
  }
  for (std::string& w :
       delegation_warnings(processes, delegations, mount, proc_root, cgroupns_root)) {
    warnings.push_back(std::move(w));
  }
  return warnings;
}

}  // namespace sebpf::daemon
