#include "daemon/bypass_check.h"

#include <linux/capability.h>

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
  const char* what;  // what a process holding it may do
  const char* remedy;
};

constexpr Bypass kBypasses[] = {
    {CAP_NET_RAW,
     "may open packet sockets (CAP_NET_RAW in the bounding set), whose frames no cgroup program "
     "sees",
     "Drop the capability (e.g. --cap-drop NET_RAW) or also attach the host side of the "
     "container's interface"},
    {CAP_NET_ADMIN,
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
    for (size_t i = 0; i < std::size(kBypasses); ++i) {
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
