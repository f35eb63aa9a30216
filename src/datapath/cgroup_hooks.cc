#include "datapath/cgroup_hooks.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "datapath/program_ownership.h"
#include "datapath/system.h"

namespace sebpf::datapath {
namespace fs = std::filesystem;

namespace {

// The kernel's id of the program a link runs; 0 if it cannot tell.
uint32_t linked_program_id(int link_fd) {
  bpf_link_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(link_fd, &info, &len) == 0 ? info.prog_id : 0;
}

enum class LinkState { kHeld, kPinGone, kDetached, kSwapped };

// Whether the link pinned at `path` still runs program `program_id` on
// cgroup `cgroup_id`. Another program can end it three ways: remove the
// pin (the link goes with its last reference); detach it
// (BPF_LINK_DETACH, as `bpftool link detach` does), which leaves the pin
// and the link in place on no cgroup: the kernel then reports cgroup id
// 0; or put a program of its own in the link (BPF_LINK_UPDATE), which
// leaves the link on the cgroup, running that program instead of ours.
// A link whose cgroup was removed reads as detached, but no record names
// a removed cgroup for long (the watcher detaches it). If the kernel
// cannot tell (or `program_id` is unknown: 0), held.
LinkState link_state(const std::string& path, uint64_t cgroup_id, uint32_t program_id) {
  UniqueFd link(bpf_obj_get(path.c_str()));
  if (!link) return errno == ENOENT ? LinkState::kPinGone : LinkState::kHeld;
  bpf_link_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0 || info.type != BPF_LINK_TYPE_CGROUP) {
    return LinkState::kHeld;
  }
  if (info.cgroup.cgroup_id != cgroup_id) return LinkState::kDetached;
  return program_id == 0 || info.prog_id == program_id ? LinkState::kHeld : LinkState::kSwapped;
}

}  // namespace

CgroupHooks::CgroupHooks(std::vector<CgroupProgram> programs, std::string links_dir)
    : programs_(std::move(programs)), links_dir_(std::move(links_dir)) {
  for (const CgroupProgram& p : programs_) program_ids_.push_back(program_id(p.fd));
}

std::string CgroupHooks::dir_for(uint64_t cgroup_id) const {
  return links_dir_.empty() ? "" : links_dir_ + "/cgroup-" + std::to_string(cgroup_id);
}

Status CgroupHooks::attach(uint64_t cgroup_id, int cgroup_fd) {
  std::vector<UniqueFd> links;
  const std::string dir = links_dir_.empty() ? "" : dir_for(cgroup_id);
  auto fail = [&](Error error) -> Status {
    for (auto& link : links) bpf_link_detach(link.get());
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
  for (const CgroupProgram& prog : programs_) {
    UniqueFd link(bpf_link_create(prog.fd, cgroup_fd, prog.hook, nullptr));
    if (!link) return fail(Error::from_errno(errno, "attach " + prog.name));
    links.push_back(std::move(link));
    if (!dir.empty()) {
      const std::string path = dir + "/" + prog.name;
      if (bpf_obj_pin(links.back().get(), path.c_str()) != 0) {
        return fail(Error::from_errno(errno, "pin link " + path));
      }
    }
  }
  // Pinned links live on in bpffs: closing our fds keeps the daemon at a
  // few fds however many cgroups it holds.
  if (dir.empty()) links_[cgroup_id] = std::move(links);
  return ok_status();
}

Result<std::vector<std::string>> CgroupHooks::restore(uint64_t cgroup_id, int cgroup_fd) {
  std::vector<std::string> restored;
  if (links_dir_.empty()) return restored;
  const std::string dir = dir_for(cgroup_id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error::from_errno(ec.value(), "create link directory " + dir);
  for (size_t i = 0; i < programs_.size(); ++i) {
    const CgroupProgram& prog = programs_[i];
    const std::string path = dir + "/" + prog.name;
    const LinkState state = link_state(path, cgroup_id, program_ids_[i]);
    if (state == LinkState::kHeld) continue;
    if (state == LinkState::kSwapped) {
      // The link is on the cgroup: our program goes back in it in one
      // step, as adopt() does, with no moment where neither runs.
      UniqueFd link(bpf_obj_get(path.c_str()));
      if (!link) return Error::from_errno(errno, "open link " + path);
      if (bpf_link_update(link.get(), prog.fd, nullptr) != 0) {
        return Error::from_errno(errno, "put " + prog.name + " back in link " + path);
      }
      restored.push_back(prog.name);
      continue;
    }
    // A detached link's pin names a link that holds nothing: replaced.
    if (state == LinkState::kDetached && unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Error::from_errno(errno, "remove the pin of detached link " + path);
    }
    UniqueFd link(bpf_link_create(prog.fd, cgroup_fd, prog.hook, nullptr));
    if (!link) return Error::from_errno(errno, "attach " + prog.name + " again");
    if (bpf_obj_pin(link.get(), path.c_str()) != 0) {
      const int err = errno;
      bpf_link_detach(link.get());
      return Error::from_errno(err, "pin link " + path + " again");
    }
    restored.push_back(prog.name);
  }
  return restored;
}

bool CgroupHooks::links_missing(uint64_t cgroup_id) const {
  if (links_dir_.empty()) return false;
  const std::string dir = dir_for(cgroup_id);
  for (size_t i = 0; i < programs_.size(); ++i) {
    if (link_state(dir + "/" + programs_[i].name, cgroup_id, program_ids_[i]) != LinkState::kHeld) {
      return true;
    }
  }
  return false;
}

Status CgroupHooks::detach(uint64_t cgroup_id) {
  // BPF_LINK_DETACH ends the attachment even while other references (the
  // pin) remain; a link whose cgroup is gone is detached already.
  auto it = links_.find(cgroup_id);
  if (it != links_.end()) {
    for (auto& link : it->second) bpf_link_detach(link.get());
    links_.erase(it);
  }
  if (!links_dir_.empty()) {
    for (const CgroupProgram& prog : programs_) {
      const std::string path = dir_for(cgroup_id) + "/" + prog.name;
      std::error_code ec;
      if (!fs::exists(path, ec)) continue;  // never pinned: a failed attach
      UniqueFd link(bpf_obj_get(path.c_str()));
      if (link) bpf_link_detach(link.get());
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
  for (fs::directory_iterator it(links_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& entry = *it;
    const std::string name = entry.path().filename();
    if (name.rfind("cgroup-", 0) != 0) continue;
    const uint64_t id = std::strtoull(name.c_str() + 7, nullptr, 10);
    std::vector<UniqueFd> links;
    std::string problem;
    for (size_t i = 0; i < programs_.size(); ++i) {
      const CgroupProgram& prog = programs_[i];
      const std::string path = entry.path().string() + "/" + prog.name;
      UniqueFd link(bpf_obj_get(path.c_str()));
      if (!link) {
        problem = "link " + path + " is missing (an attach was interrupted)";
        break;
      }
      // A restart of the same build reuses the programs the links run.
      const bool on_ours = program_ids_[i] != 0 && linked_program_id(link.get()) == program_ids_[i];
      if (int err = on_ours ? 0 : bpf_link_update(link.get(), prog.fd, nullptr); err != 0) {
        // ENOLINK: the link is on no cgroup. Its cgroup was removed, or
        // another program detached it (the cgroup is checked below), in
        // which case the watcher's first look attaches the program again
        // (restore). Anything else: fail closed, leaving the link on the
        // previous process's programs, which use the same maps and so
        // enforce the same policy.
        if (err == -ENOLINK) continue;
        result.notes.push_back({AdoptionNote::Level::kWarning,
                                "cgroup:" + std::to_string(id) + " link " + path +
                                    " kept on the previous program: " + errno_text(-err)});
      }
      links.push_back(std::move(link));
    }
    // A removed cgroup's links are detached asynchronously; do not wait.
    if (problem.empty() && !cgroup_exists(id)) problem = "its cgroup was removed";
    if (problem.empty()) {
      result.live.push_back(id);  // the pins hold the links; our fds close
      continue;
    }
    for (auto& link : links) bpf_link_detach(link.get());
    std::error_code not_removed;  // left for the next start to drop again
    fs::remove_all(entry.path(), not_removed);
    result.dropped[id] = problem;
  }
  if (ec) return Error::from_errno(ec.value(), "read pinned links in " + links_dir_);
  return result;
}

}  // namespace sebpf::datapath
