#include "daemon/bypass_check.h"

#include <linux/capability.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>

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
     "interfaces the packet socket filter is not on (it was set up after the attach)",
     "Detach and attach again once the workload's network is set up, or drop the capability "
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

std::string warning(const Bypass& bypass, const std::vector<std::string>& pids) {
  std::string named;
  for (size_t i = 0; i < pids.size() && i < kPidsNamed; ++i) named += (i ? ", " : "") + pids[i];
  if (pids.size() > kPidsNamed) {
    named += " and " + std::to_string(pids.size() - kPidsNamed) + " more";
  }
  return "process" + std::string(pids.size() == 1 ? " " : "es ") + named + " " + bypass.what +
         ": they can send past this attachment. " + bypass.remedy;
}

}  // namespace

std::vector<std::string> cgroup_bypass_warnings(const std::string& cgroup_dir,
                                                uint64_t guarded_netns,
                                                const std::string& proc_root) {
  namespace fs = std::filesystem;
  std::vector<std::string> pids;
  pids_in(cgroup_dir, pids);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(cgroup_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory(ec)) pids_in(it->path(), pids);
  }
  std::vector<std::string> holders[std::size(kBypasses)];
  for (const std::string& pid : pids) {
    const auto caps = datapath::capability_set(proc_root + "/" + pid + "/status", "CapBnd");
    if (!caps.ok()) continue;
    const bool in_guarded_netns = guarded_netns != 0 && netns_of(proc_root, pid) == guarded_netns;
    for (size_t i = 0; i < std::size(kBypasses); ++i) {
      if (kBypasses[i].held_by_packet_filter && in_guarded_netns) continue;
      if (*caps >> kBypasses[i].capability & 1) holders[i].push_back(pid);
    }
  }
  std::vector<std::string> warnings;
  for (size_t i = 0; i < std::size(kBypasses); ++i) {
    if (!holders[i].empty()) warnings.push_back(warning(kBypasses[i], holders[i]));
  }
  return warnings;
}

}  // namespace sebpf::daemon
