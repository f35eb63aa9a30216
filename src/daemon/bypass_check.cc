#include "daemon/bypass_check.h"

#include <linux/capability.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "datapath/system.h"

namespace sebpf::daemon {
namespace {

// Processes named in a warning; the rest are counted.
constexpr size_t kPidsNamed = 5;

void pids_in(const std::filesystem::path& dir, std::vector<std::string>& out) {
  std::ifstream procs(dir / "cgroup.procs");
  std::string pid;
  while (procs >> pid) out.push_back(pid);
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
  std::vector<std::string> raw;
  for (const std::string& pid : pids) {
    const auto caps = datapath::capability_set(proc_root + "/" + pid + "/status", "CapBnd");
    if (caps.ok() && (*caps >> CAP_NET_RAW & 1)) raw.push_back(pid);
  }
  if (raw.empty()) return {};
  std::string named;
  for (size_t i = 0; i < raw.size() && i < kPidsNamed; ++i) named += (i ? ", " : "") + raw[i];
  if (raw.size() > kPidsNamed) named += " and " + std::to_string(raw.size() - kPidsNamed) + " more";
  return {"process" + std::string(raw.size() == 1 ? " " : "es ") + named +
          " may open packet sockets (CAP_NET_RAW in the bounding set), whose frames no cgroup "
          "program sees: they can send past this attachment. Drop the capability (e.g. "
          "--cap-drop NET_RAW) or also attach the host side of the container's interface"};
}

}  // namespace sebpf::daemon
