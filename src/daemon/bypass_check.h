// What a cgroup attachment cannot see: packet sockets (AF_PACKET) send
// frames that no cgroup BPF program is shown, so a process that may open
// one (CAP_NET_RAW in its bounding set: Docker grants it by default) can
// send past the attachment. The kernel offers no cgroup hook on packet
// socket creation (only the BPF LSM, which not every kernel allows), so
// the daemon says so in the Attachment instead of staying silent.
#pragma once

#include <string>
#include <vector>

namespace sebpf::daemon {

// Warnings for the cgroup directory `cgroup_dir` (absolute) and its
// descendants, from the processes in them now: empty when none may open
// a packet socket. Processes that exit meanwhile, or whose status cannot
// be read, are skipped.
std::vector<std::string> cgroup_bypass_warnings(const std::string& cgroup_dir,
                                                const std::string& proc_root = "/proc");

}  // namespace sebpf::daemon
