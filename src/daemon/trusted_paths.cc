#include "daemon/trusted_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <vector>

#include "datapath/system.h"

namespace sebpf::daemon {
namespace {

namespace fs = std::filesystem;

// Why another user could change a path's component, and the command that
// takes it back.
struct Untrusted {
  std::string problem;
  std::string fix;
};

// nullopt if no one but root (or this process's user) can change it.
std::optional<Untrusted> untrusted(const std::string& component, const struct stat& st,
                                   bool may_be_shared) {
  if (st.st_uid != 0 && st.st_uid != geteuid()) {
    return Untrusted{"is owned by uid " + std::to_string(st.st_uid) + ", not root",
                     "chown root " + component};
  }
  // A link's own mode means nothing: only its owner can change it.
  if (S_ISLNK(st.st_mode)) return std::nullopt;
  // In a sticky directory others may add names but not move or remove
  // ours; what the daemon keeps or reads must be writable by root alone.
  if (may_be_shared && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) != 0) return std::nullopt;
  const bool by_group = (st.st_mode & S_IWGRP) != 0 && st.st_gid != 0;
  if ((st.st_mode & S_IWOTH) != 0) {
    return Untrusted{"is writable by every user",
                     (by_group ? "chmod go-w " : "chmod o-w ") + component};
  }
  if (by_group) {
    return Untrusted{"is writable by group " + std::to_string(st.st_gid), "chmod g-w " + component};
  }
  return std::nullopt;
}

struct Check {
  const std::string& path;
  const std::string& setting;
  const std::string& at_stake;

  Error refuse(const std::string& component, const Untrusted& why) const {
    return Error(Errc::kFailedPrecondition, setting + " " + path + ": " + component + " " +
                                                why.problem + ", so another user could change " +
                                                at_stake + "; run \"" + why.fix +
                                                "\" or choose another path");
  }

  // Resolves `chain` (absolute) from / a component at a time, as the
  // kernel does (".." after a link leaves the link's target), checking each
  // component and each link's target. The last component must be writable
  // by root alone unless `last_may_be_shared` (a link above `path` led to
  // it). Returns where `chain` leads, or nullopt where a component is
  // missing: the daemon makes the rest, or its reader reports it.
  Result<std::optional<fs::path>> walk(const fs::path& chain, bool last_may_be_shared) {
    std::vector<fs::path> parts;
    for (auto part = std::next(chain.begin()); part != chain.end(); ++part) {
      if (!part->empty() && *part != ".") parts.push_back(*part);
    }
    fs::path at = "/";
    for (size_t i = 0; i <= parts.size(); ++i) {
      if (i > 0) at = parts[i - 1] == ".." ? at.parent_path() : at / parts[i - 1];
      struct stat st {};
      if (lstat(at.c_str(), &st) != 0) {
        if (errno == ENOENT) return std::optional<fs::path>();
        return Error::from_errno(errno, setting + " " + path + ": look at " + at.string());
      }
      const bool may_be_shared = i < parts.size() || last_may_be_shared;
      if (auto why = untrusted(at.string(), st, may_be_shared)) return refuse(at.string(), *why);
      if (!S_ISLNK(st.st_mode)) continue;
      if (++links_followed > kMaxLinks) {
        return Error::from_errno(ELOOP, setting + " " + path + ": follow " + at.string());
      }
      std::error_code ec;
      fs::path target = fs::read_symlink(at, ec);
      if (ec) return Error::from_errno(ec.value(), setting + " " + path + ": read " + at.string());
      if (target.is_relative()) target = at.parent_path() / target;
      SEBPF_ASSIGN_OR_RETURN(std::optional<fs::path> resolved, walk(target, may_be_shared));
      if (!resolved) return resolved;
      at = std::move(*resolved);
    }
    return std::optional<fs::path>(at);
  }

  // As many as the kernel follows in one path (ELOOP beyond).
  static constexpr int kMaxLinks = 40;
  int links_followed = 0;
};

}  // namespace

Status check_trusted_path(const std::string& path, const std::string& setting,
                          const std::string& at_stake) {
  if (path.empty() || path.front() != '/') {
    return Error(Errc::kInvalidArgument,
                 setting + " must be an absolute path, not \"" + path + "\"");
  }
  Check check{path, setting, at_stake};
  auto resolved = check.walk(path, /*last_may_be_shared=*/false);
  if (!resolved.ok()) return resolved.error();
  return ok_status();
}

Status check_trusted_paths(const DaemonConfig& config, const std::string& config_file) {
  if (!config_file.empty()) {
    std::error_code ec;  // only when the working directory is gone
    const fs::path absolute = fs::absolute(config_file, ec);
    if (ec) return Error::from_errno(ec.value(), "the configuration file " + config_file);
    SEBPF_RETURN_IF_ERROR(check_trusted_path(absolute.string(), "the configuration file",
                                             "the daemon's configuration"));
  }
  if (!config.policy_file.empty()) {
    SEBPF_RETURN_IF_ERROR(
        check_trusted_path(config.policy_file, "policy_file", "the policies new attachments get"));
  }
  SEBPF_RETURN_IF_ERROR(
      check_trusted_path(config.state_dir, "state_dir", "the state a restart adopts"));
  SEBPF_RETURN_IF_ERROR(check_trusted_path(fs::path(config.socket_path).parent_path().string(),
                                           "socket.path's directory", "the API socket"));
  return check_trusted_path(config.datapath.pin_dir, "datapath.pin_dir",
                            "the pinned maps and links that enforce the policy, or remove them");
}

Status make_trusted_directories(const DaemonConfig& config) {
  const std::string socket_dir = fs::path(config.socket_path).parent_path().string();
  for (const std::string& dir : {config.state_dir, socket_dir}) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Error::from_errno(ec.value(), "create " + dir);
  }
  SEBPF_RETURN_IF_ERROR(datapath::ensure_bpffs_dir(config.datapath.pin_dir));
  return check_trusted_paths(config, "");
}

}  // namespace sebpf::daemon
