// What a cgroup attachment cannot see, said in the Attachment instead of
// staying silent. Cgroup programs judge the packets a socket sends; two
// capabilities let a process get packets out some other way:
// - CAP_NET_RAW: packet sockets (AF_PACKET) send frames no cgroup program
//   is shown. Docker grants it by default. The packet socket filter on the
//   interfaces of the workload's network namespace stops them, but only in
//   the namespace guarded at attach time: a process of the cgroup in
//   another one (a container whose network was set up after the attach)
//   is not held.
// - CAP_NET_ADMIN: the process may reconfigure the network namespace its
//   traffic leaves from, e.g. send to an allowed address through a veth
//   pair of its own, rewrite the destination (NAT) and forward the packet
//   out: forwarded packets belong to no socket, so no cgroup program runs.
//   Only a program outside the namespace (an interface attachment on the
//   host side) is out of its reach.
// And one thing a process's user may do: move it to another cgroup. A user
// to whom a cgroup above the attached one is delegated (a systemd user
// session's, a subtree given with Delegate=yes) owns that cgroup's
// cgroup.procs, and may move its processes anywhere under it, out of the
// attachment. So may a group whose members may write it (group-writable),
// or anyone (writable by all). A cgroup namespace holds its processes
// under its root where the hierarchy is mounted with nsdelegate (systemd
// mounts it so), and otherwise as far as the mounts they see.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/target_resolver.h"

namespace sebpf::daemon {

// Warnings for the cgroup directory `cgroup_dir` (absolute) and its
// descendants, from the processes in them now: one per capability above
// that some thread of a process holds in its bounding set (for
// CAP_NET_RAW: in a network namespace other than `guarded_netns`, an nsfs
// inode), and one per user, group or "anyone" who may write the
// cgroup.procs of a cgroup above `cgroup_dir` (below the hierarchy's root,
// `mount`) that a thread reaches, and whom that thread is (runs as, runs
// with): it may move its process out of the attached cgroup. A thread in
// the daemon's cgroup namespace reaches the whole hierarchy; one in
// another, the cgroups under that namespace's root (which `cgroupns_root`
// looks up) on a hierarchy mounted with nsdelegate, and without it also
// those under its cgroup v2 mounts (what it sees). Each names the
// processes; empty when none does. Processes and threads that exit
// meanwhile, or whose status cannot be read, are skipped.
std::vector<std::string> cgroup_bypass_warnings(
    const std::string& cgroup_dir, uint64_t guarded_netns, const std::string& mount,
    const std::string& proc_root = "/proc", const CgroupnsRootOf& cgroupns_root = cgroupns_root_of);

}  // namespace sebpf::daemon
