#include "datapath/system.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace sebpf::datapath {
namespace {

constexpr int kCapNetAdmin = 12;
constexpr int kCapSysAdmin = 21;
constexpr int kCapBpf = 39;

// /proc/mounts escapes space, tab, newline and backslash as octal.
std::string unescape_mount_field(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 3 < in.size()) {
      const std::string oct = in.substr(i + 1, 3);
      if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

// A file handle with room for the 8-byte kernfs id that names a cgroup.
struct CgroupHandle {
  alignas(file_handle) unsigned char storage[sizeof(file_handle) + sizeof(uint64_t)] = {};
  file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
};
constexpr int kFileidKernfs = 0xfe;  // the kernel's FILEID_KERNFS

bool is_on_fs(const std::string& path, int64_t magic) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && static_cast<int64_t>(st.f_type) == magic;
}

}  // namespace

Status check_privileges() {
  SEBPF_ASSIGN_OR_RETURN(uint64_t caps, capability_set("/proc/self/status", "CapEff"));
  auto has = [caps](int cap) { return (caps >> cap) & 1U; };
  std::vector<std::string> missing;
  if (!has(kCapBpf) && !has(kCapSysAdmin)) missing.emplace_back("CAP_BPF");
  if (!has(kCapNetAdmin) && !has(kCapSysAdmin)) missing.emplace_back("CAP_NET_ADMIN");
  if (missing.empty()) return ok_status();
  std::string names;
  for (const auto& m : missing) names += (names.empty() ? "" : " and ") + m;
  return Error(Errc::kPermissionDenied,
               "loading and attaching BPF programs needs root or " + names +
                   " (missing from this process's effective capabilities)");
}

Result<uint64_t> capability_set(const std::string& status_file, std::string_view field) {
  const std::string prefix = std::string(field) + ":";
  std::ifstream status(status_file);
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with(prefix)) continue;
    if (auto set = parse_capability_set(std::string_view(line).substr(prefix.size()))) return *set;
    break;
  }
  return Error(Errc::kInternal, "cannot read " + prefix + " from " + status_file);
}

std::optional<uint64_t> parse_capability_set(std::string_view value) {
  const size_t first = value.find_first_not_of(" \t");
  if (first == std::string_view::npos) return std::nullopt;
  value = value.substr(first, value.find_last_not_of(" \t\r\n") - first + 1);
  uint64_t set = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), set, 16);
  if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
  return set;
}

Result<std::string> find_cgroup2_mount(const std::string& mounts_file) {
  std::ifstream mounts(mounts_file);
  if (!mounts) return Error::from_errno(errno, "open " + mounts_file);
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, target, fstype;
    fields >> source >> target >> fstype;
    if (fstype == "cgroup2") return unescape_mount_field(target);
  }
  return Error(Errc::kUnsupported,
               "no cgroup v2 hierarchy is mounted (none in " + mounts_file +
                   "); mount one with "
                   "\"mount -t cgroup2 none /sys/fs/cgroup/unified\" or boot with "
                   "systemd.unified_cgroup_hierarchy=1");
}

std::optional<std::vector<Cgroup2Mount>> cgroup2_mounts(const std::string& mountinfo_file) {
  std::ifstream mountinfo(mountinfo_file);
  if (!mountinfo) return std::nullopt;
  std::vector<Cgroup2Mount> out;
  for (std::string line; std::getline(mountinfo, line);) {
    // "<id> <parent> <major:minor> <root> <mount point> <options>
    // [<optional fields>...] - <type> <source> <super options>", one space
    // between fields, any of which but the first three may be empty (a
    // mount's source may be "").
    std::vector<std::string_view> fields;
    for (std::string_view rest = line;;) {
      const size_t space = rest.find(' ');
      fields.push_back(rest.substr(0, space));
      if (space == std::string_view::npos) break;
      rest.remove_prefix(space + 1);
    }
    const auto separator = std::find(fields.begin() + std::min<size_t>(fields.size(), 6),
                                     fields.end(), std::string_view("-"));
    if (fields.size() < 6 || fields.end() - separator != 4) return std::nullopt;
    if (separator[1] != "cgroup2") continue;
    Cgroup2Mount mount{unescape_mount_field(std::string(fields[3])),
                       unescape_mount_field(std::string(fields[4])), false};
    for (std::string_view flags = separator[3]; !flags.empty();) {
      const size_t comma = flags.find(',');
      if (flags.substr(0, comma) == "nsdelegate") mount.ns_delegate = true;
      flags = comma == std::string_view::npos ? std::string_view() : flags.substr(comma + 1);
    }
    out.push_back(std::move(mount));
  }
  return out;
}

Result<CgroupDir> open_cgroup(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return Error(Errc::kInvalidArgument, "cgroup path \"" + path + "\" must be an absolute path");
  }
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      return Error(Errc::kNotFound, "cgroup \"" + path + "\" does not exist");
    }
    if (err == ENOTDIR) {
      return Error(Errc::kInvalidArgument, "cgroup \"" + path + "\" is not a directory");
    }
    return Error::from_errno(err, "open cgroup \"" + path + "\"");
  }
  struct statfs st {};
  if (fstatfs(fd.get(), &st) != 0) return Error::from_errno(errno, "statfs \"" + path + "\"");
  if (st.f_type != CGROUP2_SUPER_MAGIC) {
    auto mount = find_cgroup2_mount();
    return Error(Errc::kInvalidArgument,
                 "\"" + path + "\" is not a cgroup v2 directory" +
                     (mount.ok() ? " (cgroup v2 is mounted at " + *mount + ")" : ""));
  }
  // The cgroup id is the kernfs node id, which the kernel hands out as the
  // directory's file handle.
  CgroupHandle handle;
  handle.get()->handle_bytes = sizeof(uint64_t);
  int mount_id = 0;
  if (name_to_handle_at(fd.get(), "", handle.get(), &mount_id, AT_EMPTY_PATH) != 0) {
    return Error::from_errno(errno, "read the id of cgroup \"" + path + "\"");
  }
  uint64_t id = 0;
  std::memcpy(&id, handle.get()->f_handle, sizeof(id));
  // The hierarchy's root is the directory whose ".." lies on another
  // filesystem (asked through the fd: "/x/" or "/x/." name the same dir).
  struct stat self {
  }, parent{};
  if (fstat(fd.get(), &self) == 0 && fstatat(fd.get(), "..", &parent, 0) == 0 &&
      self.st_dev != parent.st_dev) {
    return Error(Errc::kInvalidArgument,
                 "\"" + path +
                     "\" is the root of the cgroup v2 hierarchy; attaching there would filter "
                     "the whole host. Attach a child cgroup instead");
  }
  return CgroupDir{std::move(fd), id};
}

bool cgroup_exists(uint64_t cgroup_id) {
  auto mount = find_cgroup2_mount();
  if (!mount.ok()) return false;
  UniqueFd root(open(mount->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return false;
  CgroupHandle handle;
  handle.get()->handle_bytes = sizeof(uint64_t);
  handle.get()->handle_type = kFileidKernfs;
  std::memcpy(handle.get()->f_handle, &cgroup_id, sizeof(cgroup_id));
  UniqueFd fd(open_by_handle_at(root.get(), handle.get(), O_RDONLY | O_CLOEXEC));
  return fd.valid();
}

bool interface_exists(uint64_t ifindex) {
  char name[IF_NAMESIZE];
  return if_indextoname(static_cast<unsigned>(ifindex), name) != nullptr;
}

Status ensure_bpffs_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty() || dir[0] != '/') {
    return Error(Errc::kInvalidArgument, "pin directory \"" + dir + "\" must be absolute");
  }
  // The nearest existing ancestor tells which filesystem the dir lands on.
  fs::path existing = dir;
  std::error_code ec;
  while (!fs::exists(existing, ec) && existing.has_parent_path() && existing != "/") {
    existing = existing.parent_path();
  }
  if (!is_on_fs(existing, BPF_FS_MAGIC)) {
    const std::string standard = "/sys/fs/bpf";
    const bool under_standard = dir == standard || dir.rfind(standard + "/", 0) == 0;
    if (!under_standard || !fs::is_directory(standard, ec)) {
      return Error(Errc::kFailedPrecondition,
                   "pin directory \"" + dir + "\" is not on a bpffs; mount one with \"mount -t " +
                       "bpf bpf <dir>\" or choose a directory under /sys/fs/bpf");
    }
    if (!is_on_fs(standard, BPF_FS_MAGIC) &&
        mount("bpf", standard.c_str(), "bpf", 0, "mode=0700") != 0) {
      return Error::from_errno(errno, "bpffs is not mounted at /sys/fs/bpf and mounting it failed");
    }
  }
  fs::create_directories(dir, ec);
  if (ec) return Error::from_errno(ec.value(), "create pin directory \"" + dir + "\"");
  if (!is_on_fs(dir, BPF_FS_MAGIC)) {
    return Error(Errc::kFailedPrecondition, "pin directory \"" + dir + "\" is not on a bpffs");
  }
  return ok_status();
}

Result<InterfaceInfo> lookup_interface(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return Error(Errc::kInvalidArgument, "\"" + name + "\" is not a valid interface name");
  }
  const unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) {
    return Error(Errc::kNotFound, "no network interface named \"" + name + "\"");
  }
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return Error::from_errno(errno, "socket");
  ifreq req{};
  std::memcpy(req.ifr_name, name.c_str(), name.size());
  if (ioctl(sock.get(), SIOCGIFHWADDR, &req) != 0) {
    return Error::from_errno(errno, "read the link type of \"" + name + "\"");
  }
  switch (req.ifr_hwaddr.sa_family) {
    case ARPHRD_ETHER:
      return InterfaceInfo{ifindex, false};
    case ARPHRD_NONE:
      return InterfaceInfo{ifindex, true};
    case ARPHRD_LOOPBACK:
      return Error(Errc::kInvalidArgument,
                   "\"" + name +
                       "\" is the loopback interface; attach the workload's own "
                       "interface or its cgroup instead");
    default:
      return Error(Errc::kUnsupported, "interface \"" + name + "\" has link type " +
                                           std::to_string(req.ifr_hwaddr.sa_family) +
                                           "; only Ethernet and L3 (tun) devices are supported");
  }
}

}  // namespace sebpf::datapath
