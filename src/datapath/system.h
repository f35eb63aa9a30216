// What the datapath needs from the host, checked with a clear reason when it
// is missing: privileges, a cgroup v2 mount, a bpffs, a cgroup or interface
// that exists.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sebpf::datapath {

// Root, or CAP_BPF + CAP_NET_ADMIN (CAP_SYS_ADMIN stands in for either).
// The error names the missing capabilities.
Status check_privileges();

// A capability set of a process, one bit per capability: `field` ("CapEff",
// "CapBnd", ...) of its status file (/proc/<pid>/status).
Result<uint64_t> capability_set(const std::string& status_file, std::string_view field);
// A capability set's value as a status file writes it after the field's
// colon ("\t000001ffffffffff"); nullopt for anything but hex digits
// between blanks.
std::optional<uint64_t> parse_capability_set(std::string_view value);

// The mount point of the cgroup v2 hierarchy, read from /proc/mounts (it is
// /sys/fs/cgroup on most systems, /sys/fs/cgroup/unified on hybrid ones).
Result<std::string> find_cgroup2_mount(const std::string& mounts_file = "/proc/mounts");

// A cgroup v2 mount a process sees, from its mountinfo.
struct Cgroup2Mount {
  // The cgroup at the mount's root, relative to the root of the reading
  // thread's cgroup namespace ("/": the hierarchy's own; one mounted inside
  // a cgroup namespace is rooted at the namespace's root).
  std::string root;
  std::string mount_point;
  // nsdelegate: cgroup namespaces are delegation boundaries, so a process
  // moves others only between cgroups under its namespace's root.
  bool ns_delegate = false;
};
// The cgroup v2 mounts in a mountinfo file (/proc/<pid>/mountinfo);
// nullopt when it cannot be read or a line is not as the kernel writes it.
std::optional<std::vector<Cgroup2Mount>> cgroup2_mounts(const std::string& mountinfo_file);

// A cgroup v2 directory, opened, with its id (what bpf_get_current_cgroup_id
// returns for tasks in it).
struct CgroupDir {
  UniqueFd fd;
  uint64_t id = 0;
};
// Refuses paths that do not exist, are not directories on a cgroup2 fs, or
// are the root of the hierarchy (that would filter the whole host).
Result<CgroupDir> open_cgroup(const std::string& path);

// Whether the cgroup with this id still exists (not removed). Asked by file
// handle, so it needs no path.
bool cgroup_exists(uint64_t cgroup_id);
// Whether an interface of the calling thread's network namespace has this
// index (one being deleted has none once it is unlisted).
bool interface_exists(uint64_t ifindex);

// Makes `dir` exist on a bpffs. When its bpffs is not mounted and `dir` lies
// under /sys/fs/bpf, mounts one there; elsewhere says how to mount it.
Status ensure_bpffs_dir(const std::string& dir);

// A network interface by name.
struct InterfaceInfo {
  uint32_t ifindex = 0;
  bool l3_device = false;  // no Ethernet header (tun, wireguard)
};
Result<InterfaceInfo> lookup_interface(const std::string& name);

}  // namespace sebpf::datapath
