#include "daemon/bypass_check.h"

#include <linux/capability.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

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

// The inode of the network namespace `pid` is in, 0 when none can be told.
// That of a running thread when the main thread has exited while others
// run: its own ns/net no longer opens, and the process is still listed.
uint64_t netns_of(const std::string& proc_root, const std::string& pid) {
  struct stat netns {};
  if (stat((proc_root + "/" + pid + "/ns/net").c_str(), &netns) == 0) return netns.st_ino;
  // increment(ec): a process that ends meanwhile fails the read (ENOENT),
  // which operator++ would throw.
  std::error_code ec;
  for (std::filesystem::directory_iterator task(proc_root + "/" + pid + "/task", ec), end;
       !ec && task != end; task.increment(ec)) {
    if (stat((task->path() / "ns/net").c_str(), &netns) == 0) return netns.st_ino;
  }
  return 0;
}

// What the check reads of a process's status, once: its bounding set, its
// uids (real, effective, saved, filesystem) and its gids (the same four,
// then its supplementary groups); none if unread, which matches no
// delegation but one to anyone. Nullopt when it has gone.
struct ProcessStatus {
  uint64_t bounding_set = 0;
  std::vector<uid_t> uids;
  std::vector<gid_t> gids;
};
std::optional<ProcessStatus> status_of(const std::string& proc_root, const std::string& pid) {
  std::ifstream status(proc_root + "/" + pid + "/status");
  ProcessStatus out;
  bool bounding_set_read = false;
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("CapBnd:")) {
      const auto set = datapath::parse_capability_set(std::string_view(line).substr(7));
      bounding_set_read = set.has_value();
      out.bounding_set = set.value_or(0);
    } else if (line.starts_with("Uid:")) {
      std::istringstream fields(line.substr(4));
      for (uid_t uid; fields >> uid;) out.uids.push_back(uid);
    } else if (line.starts_with("Gid:") || line.starts_with("Groups:")) {
      std::istringstream fields(line.substr(line.find(':') + 1));
      for (gid_t gid; fields >> gid;) out.gids.push_back(gid);
    }
  }
  if (!bounding_set_read) return std::nullopt;
  return out;
}

// The inode of the cgroup namespace `pid` is in; 0 when it has gone.
uint64_t cgroupns_of(const std::string& proc_root, const std::string& pid) {
  struct stat ns {};
  return stat((proc_root + "/" + pid + "/ns/cgroup").c_str(), &ns) == 0 ? ns.st_ino : 0;
}

// Who, besides root, may write a cgroup's cgroup.procs, and so move its
// processes between any two cgroups under it: a user other than root who
// owns it (delegated to them), the members of its group if it is
// group-writable, anyone if it is writable by all.
struct Mover {
  enum class Kind { kUser, kGroup, kAnyone } kind;
  uint32_t id;  // uid, gid, or 0
  auto operator<=>(const Mover&) const = default;

  bool includes(const ProcessStatus& status) const {
    const auto has = [this](const auto& ids) {
      return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    // Root's processes (files are written as the filesystem uid, the
    // fourth) may write it whatever its mode; the check names those of
    // other users.
    if (kind != Kind::kUser && status.uids.size() == 4 && status.uids[3] == 0) return false;
    switch (kind) {
      case Kind::kUser:
        return has(status.uids);
      case Kind::kGroup:
        return has(status.gids);
      case Kind::kAnyone:
        return true;
    }
    return false;
  }
};

// Those who may write the cgroup.procs of a cgroup above `cgroup_dir`
// (below the hierarchy's root at `mount`), each with the outermost such
// cgroup.
std::map<Mover, std::string> movers_above(const std::string& cgroup_dir, const std::string& mount) {
  std::map<Mover, std::string> outermost;
  for (std::filesystem::path dir = std::filesystem::path(cgroup_dir).parent_path();
       dir.string().starts_with(mount + "/"); dir = dir.parent_path()) {
    struct stat procs {};
    if (stat((dir / "cgroup.procs").c_str(), &procs) != 0) continue;
    if (procs.st_uid != 0) outermost[{Mover::Kind::kUser, procs.st_uid}] = dir.string();
    if (procs.st_mode & S_IWGRP) outermost[{Mover::Kind::kGroup, procs.st_gid}] = dir.string();
    if (procs.st_mode & S_IWOTH) outermost[{Mover::Kind::kAnyone, 0}] = dir.string();
  }
  return outermost;
}

// Why `mover` may write `dir`'s cgroup.procs, and what to do about it.
std::string mover_reason(const Mover& mover, const std::string& dir) {
  const std::string attach = "Attach " + dir + " instead, or ";
  switch (mover.kind) {
    case Mover::Kind::kUser:
      return "they run as uid " + std::to_string(mover.id) + ", to whom " + dir +
             " is delegated (that user owns its cgroup.procs), so they may move into any cgroup "
             "under it, attached or not. " +
             attach + "run the workload as another user or in a cgroup namespace of its own";
    case Mover::Kind::kGroup:
      return "they run with gid " + std::to_string(mover.id) + ", which may write " + dir +
             "/cgroup.procs (it is group-writable), so they may move into any cgroup under it, "
             "attached or not. " +
             attach +
             "take that group's write permission away (chmod g-w), or run the workload "
             "without the group or in a cgroup namespace of its own";
    case Mover::Kind::kAnyone:
      return "anyone may write " + dir +
             "/cgroup.procs (it is writable by all), so they may move into any cgroup under it, "
             "attached or not. Take that permission away (chmod o-w), or run the workload in a "
             "cgroup namespace of its own";
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

// One warning per mover (above) some of `processes` are, with the
// outermost cgroup above `cgroup_dir` whose cgroup.procs they may write.
std::vector<std::string> delegation_warnings(
    const std::vector<std::pair<std::string, ProcessStatus>>& processes,
    const std::string& cgroup_dir, const std::string& mount, const std::string& proc_root) {
  const std::map<Mover, std::string> delegations = movers_above(cgroup_dir, mount);
  if (delegations.empty()) return {};
  // Unknown, every process is taken to share it: named rather than missed.
  struct stat own {};
  const uint64_t own_cgroupns =
      stat((proc_root + "/self/ns/cgroup").c_str(), &own) == 0 ? own.st_ino : 0;
  std::map<Mover, std::vector<std::string>> movers;
  for (const auto& [pid, status] : processes) {
    // A process in a cgroup namespace of its own (a container's, made at
    // its cgroup) is taken to be held by it: the namespace's root, which
    // it cannot move above, is not looked up.
    const uint64_t cgroupns = cgroupns_of(proc_root, pid);
    if (cgroupns == 0 || (own_cgroupns != 0 && cgroupns != own_cgroupns)) continue;
    // Named once, under the first reason (users, then groups, then anyone).
    for (const auto& [mover, dir] : delegations) {
      if (!mover.includes(status)) continue;
      movers[mover].push_back(pid);
      break;
    }
  }
  std::vector<std::string> warnings;
  for (const auto& [mover, who] : movers) {
    warnings.push_back(named(who) + " may move themselves out of this attachment: " +
                       mover_reason(mover, delegations.at(mover)));
  }
  return warnings;
}

std::string warning(const Bypass& bypass, const std::vector<std::string>& pids) {
  return named(pids) + " " + bypass.what + ": they can send past this attachment. " + bypass.remedy;
}

}  // namespace

std::vector<std::string> cgroup_bypass_warnings(const std::string& cgroup_dir,
                                                uint64_t guarded_netns, const std::string& mount,
                                                const std::string& proc_root) {
  namespace fs = std::filesystem;
  std::vector<std::string> pids;
  pids_in(cgroup_dir, pids);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(cgroup_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory(ec)) pids_in(it->path(), pids);
  }
  std::vector<std::pair<std::string, ProcessStatus>> processes;  // those still there
  std::vector<std::string> holders[std::size(kBypasses)];
  for (const std::string& pid : pids) {
    auto status = status_of(proc_root, pid);
    if (!status) continue;
    const bool in_guarded_netns = guarded_netns != 0 && netns_of(proc_root, pid) == guarded_netns;
    for (size_t i = 0; i < std::size(kBypasses); ++i) {
      if (kBypasses[i].held_by_packet_filter && in_guarded_netns) continue;
      if (status->bounding_set >> kBypasses[i].capability & 1) holders[i].push_back(pid);
    }
    processes.emplace_back(pid, std::move(*status));
  }
  std::vector<std::string> warnings;
  for (size_t i = 0; i < std::size(kBypasses); ++i) {
    if (!holders[i].empty()) warnings.push_back(warning(kBypasses[i], holders[i]));
  }
  for (std::string& w : delegation_warnings(processes, cgroup_dir, mount, proc_root)) {
    warnings.push_back(std::move(w));
  }
  return warnings;
}

}  // namespace sebpf::daemon
