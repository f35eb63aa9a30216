// AttachmentManager putting back what another program took away while it
// runs: our TC filters and the packet socket filter on an interface, the
// pinned maps and a cgroup's pinned links, and the state files.

#include <net/if.h>
#include <sys/stat.h>

#include <cerrno>
#include <set>

#include "daemon/attachment_manager.h"

namespace sebpf::daemon {

using datapath::TargetKind;

namespace {

// "a,b,c", for a log field.
std::string comma_joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

bool missing(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) != 0 && errno == ENOENT;
}

}  // namespace

void AttachmentManager::on_tc_filters_changed(uint32_t ifindex) {
  std::lock_guard lock(mu_);
  restore_tc_filters_locked(ifindex);
}

void AttachmentManager::restore_all_tc_filters() {
  std::set<uint32_t> ifindexes;
  {
    std::lock_guard lock(mu_);
    for (const AttachmentRecord& r : state_.records) {
      if (r.kind == TargetKind::kInterface) ifindexes.insert(static_cast<uint32_t>(r.key.id));
    }
    if (dp_->guards_own_namespace()) {
      std::unique_ptr<struct if_nameindex, decltype(&if_freenameindex)> all(if_nameindex(),
                                                                            &if_freenameindex);
      for (const struct if_nameindex* i = all.get(); i != nullptr && i->if_index != 0; ++i) {
        ifindexes.insert(i->if_index);
      }
    }
  }
  // One interface at a time under the lock, so that API calls (and a
  // start's first) do not wait for them all.
  for (const uint32_t ifindex : ifindexes) on_tc_filters_changed(ifindex);
}

// Under the lock, so that a detach (which takes our filters off, then
// forgets the record) is never undone: its events find no record.
void AttachmentManager::restore_tc_filters_locked(uint32_t ifindex) {
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface || r.key.id != ifindex) continue;
    auto restored = dp_->restore_interface_filters(r.key);
    if (!restored.ok()) {
      log_.error("attachment_filters_not_restored",
                 {{"id", r.id()}, {"target", r.target}, {"error", restored.error().message()}});
    } else if (!restored->empty()) {
      // Frames passed unfiltered from the removal until now: an operator
      // wants to know who removes a security product's filters.
      log_.error("attachment_filters_restored", {{"id", r.id()},
                                                 {"target", r.target},
                                                 {"hooks", restored->hooks},
                                                 {"found", restored->found}});
    }
    break;
  }
  auto restored = dp_->restore_packet_socket_filter(ifindex);
  if (!restored.ok()) {
    log_.error("packet_socket_guard_failed",
               {{"ifindex", std::to_string(ifindex)}, {"error", restored.error().message()}});
  } else if (!restored->empty()) {
    char name[IF_NAMESIZE] = {};
    log_.error("packet_socket_filter_restored",
               {{"ifindex", std::to_string(ifindex)},
                {"interface", if_indextoname(ifindex, name) != nullptr ? name : ""},
                {"found", *restored}});
  }
}

AttachmentManager::PinnedDirs AttachmentManager::pinned_dirs() const {
  std::lock_guard lock(mu_);
  PinnedDirs dirs{dp_->pin_dirs(), {}};
  if (dirs.top.root.empty()) return dirs;
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kCgroup)
      dirs.cgroup_links[r.key.id] = dp_->cgroup_links_dir(r.key.id);
  }
  return dirs;
}

void AttachmentManager::on_map_pins_removed() {
  std::lock_guard lock(mu_);
  restore_map_pins_locked();
}

void AttachmentManager::on_link_pins_removed(uint64_t cgroup_id) {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kCgroup && r.key.id == cgroup_id) restore_links_locked(r);
  }
}

void AttachmentManager::restore_all_pins() {
  std::vector<uint64_t> cgroups;
  {
    std::lock_guard lock(mu_);
    restore_map_pins_locked();
    for (const AttachmentRecord& r : state_.records) {
      if (r.kind == TargetKind::kCgroup) cgroups.push_back(r.key.id);
    }
  }
  // One cgroup at a time under the lock (about 25 us each), so that API
  // calls (and a start's first) do not wait for them all.
  for (const uint64_t id : cgroups) on_link_pins_removed(id);
}

void AttachmentManager::restore_map_pins_locked() {
  auto restored = dp_->restore_map_pins();
  if (!restored.ok()) {
    log_.error("map_pins_not_restored", {{"error", restored.error().message()},
                                         {"impact", "the next start cannot adopt the state"}});
  } else if (!restored->empty()) {
    log_.error("map_pins_restored", {{"maps", comma_joined(*restored)}});
  }
}

// Under the lock, so that a detach (which removes the cgroup's pins, then
// forgets the record) is never undone: its events find no record.
void AttachmentManager::restore_links_locked(const AttachmentRecord& r) {
  if (r.kind != TargetKind::kCgroup) return;
  auto restored = dp_->restore_cgroup_links(r.key, r.target);
  if (!restored.ok()) {
    log_.error("attachment_links_not_restored",
               {{"id", r.id()}, {"target", r.target}, {"error", restored.error().message()}});
  } else if (!restored->empty()) {
    // Those programs did not run from the removal until now.
    log_.error("attachment_links_restored",
               {{"id", r.id()}, {"target", r.target}, {"programs", comma_joined(*restored)}});
  }
}

void AttachmentManager::restore_state_files() {
  std::unique_lock lock(mu_);
  restore_state_file_locked();
  // Written by the last save, which described them all (with changes
  // since, the next sweep writes it anyway).
  if (!teachers_changed_ && !teachers_.empty() && missing(config_.learned_chains_file())) {
    save_teachers(lock);
    if (!teachers_changed_) {  // else logged as not saved, and tried again at the next sweep
      log_.error("state_file_restored", {{"file", config_.learned_chains_file()},
                                         {"reason", "another program removed it"}});
    }
  }
}

void AttachmentManager::restore_state_file_locked() {
  if (!missing(config_.state_file())) return;
  if (Status saved = save_locked(); !saved.ok()) {
    log_.error("state_save_failed",
               {{"error", saved.error().message()},
                {"impact", "the next start detaches every attachment, finding none recorded"}});
    return;
  }
  log_.error("state_file_restored",
             {{"file", config_.state_file()}, {"reason", "another program removed it"}});
}

}  // namespace sebpf::daemon
