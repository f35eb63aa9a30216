#include "datapath/cgroup_hooks.h"

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "datapath/system.h"

namespace sebpf::datapath {
namespace fs = std::filesystem;

CgroupHooks::CgroupHooks(std::vector<bpf_program*> programs, std::string links_dir)
    : programs_(std::move(programs)), links_dir_(std::move(links_dir)) {}

std::string CgroupHooks::dir_for(uint64_t cgroup_id) const {
  return links_dir_ + "/cgroup-" + std::to_string(cgroup_id);
}

Status CgroupHooks::attach(uint64_t cgroup_id, int cgroup_fd) {
  std::vector<LinkPtr> links;
  const std::string dir = links_dir_.empty() ? "" : dir_for(cgroup_id);
  auto fail = [&](Error error) -> Status {
    for (auto& link : links) bpf_link__detach(link.get());
    links.clear();
    if (!dir.empty()) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    return error;
  };
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directory(dir, ec);
    if (ec) return fail(Error::from_errno(ec.value(), "create link directory " + dir));
  }
  for (bpf_program* prog : programs_) {
    LinkPtr link(bpf_program__attach_cgroup(prog, cgroup_fd));
    if (!link) {
      return fail(Error::from_errno(errno, std::string("attach ") + bpf_program__name(prog)));
    }
    links.push_back(std::move(link));
    if (!dir.empty()) {
      const std::string path = dir + "/" + bpf_program__name(prog);
      if (int err = bpf_link__pin(links.back().get(), path.c_str()); err != 0) {
        return fail(Error::from_errno(err, "pin link " + path));
      }
    }
  }
  // Pinned links live on in bpffs: closing our fds (destroying the
  // objects) keeps the daemon at a few fds however many cgroups it holds.
  if (dir.empty()) links_[cgroup_id] = std::move(links);
  return ok_status();
}

Status CgroupHooks::detach(uint64_t cgroup_id) {
  // BPF_LINK_DETACH ends the attachment even while other references (the
  // pin) remain; a link whose cgroup is gone is detached already.
  auto it = links_.find(cgroup_id);
  if (it != links_.end()) {
    for (auto& link : it->second) bpf_link__detach(link.get());
    links_.erase(it);
  }
  if (!links_dir_.empty()) {
    for (bpf_program* prog : programs_) {
      const std::string path = dir_for(cgroup_id) + "/" + bpf_program__name(prog);
      std::error_code ec;
      if (!fs::exists(path, ec)) continue;  // never pinned: a failed attach
      LinkPtr link(bpf_link__open(path.c_str()));
      if (link) bpf_link__detach(link.get());
    }
    std::error_code ec;
    fs::remove_all(dir_for(cgroup_id), ec);
    if (ec)
      return Error::from_errno(ec.value(),
                               "remove pinned links of cgroup " + std::to_string(cgroup_id));
  }
  return ok_status();
}

Result<CgroupHooks::Adopted> CgroupHooks::adopt() {
  Adopted result;
  std::error_code ec;
  if (links_dir_.empty() || !fs::is_directory(links_dir_, ec)) return result;
  for (const auto& entry : fs::directory_iterator(links_dir_, ec)) {
    const std::string name = entry.path().filename();
    if (name.rfind("cgroup-", 0) != 0) continue;
    const uint64_t id = std::strtoull(name.c_str() + 7, nullptr, 10);
    std::vector<LinkPtr> links;
    std::string problem;
    for (bpf_program* prog : programs_) {
      const std::string path = entry.path().string() + "/" + bpf_program__name(prog);
      LinkPtr link(bpf_link__open(path.c_str()));
      if (!link) {
        problem = "link " + path + " is missing (an attach was interrupted)";
        break;
      }
      if (int err = bpf_link__update_program(link.get(), prog); err != 0) {
        // ENOLINK: the link's cgroup is gone. Anything else: fail closed,
        // leaving the link on the previous process's programs, which use
        // the same maps and so enforce the same policy.
        if (err == -ENOLINK) {
          problem = "its cgroup was removed";
          break;
        }
        result.notes.push_back("cgroup:" + std::to_string(id) + " link " + path +
                               " kept on the previous program: " + errno_text(-err));
      }
      links.push_back(std::move(link));
    }
    // A removed cgroup's links are detached asynchronously; do not wait.
    if (problem.empty() && !cgroup_exists(id)) problem = "its cgroup was removed";
    if (problem.empty()) {
      result.live.push_back(id);  // the pins hold the links; our fds close
      continue;
    }
    for (auto& link : links) bpf_link__detach(link.get());
    fs::remove_all(entry.path(), ec);
    result.dropped[id] = problem;
  }
  if (ec) return Error::from_errno(ec.value(), "read pinned links in " + links_dir_);
  return result;
}

}  // namespace sebpf::datapath
