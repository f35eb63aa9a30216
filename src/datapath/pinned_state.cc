// What a start finds in the pin directory and what it pins there: the
// maps (adopted, or made and pinned), the programs of this build (reused
// without loading them again, or pinned for the next start), the
// attachments the maps record (switched to this build's programs), and
// pins another program removed while the daemon runs, put back.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <set>
#include <span>
#include <system_error>
#include <vector>

#include "datapath/datapath_impl.h"
#include "datapath/system.h"

namespace sebpf::datapath {
namespace fs = std::filesystem;
namespace {

// Reads the meta record of pinned state and refuses state this build cannot
// read safely, or that another network namespace made.
Result<sebpf_meta> read_pinned_meta(int fd, const std::string& path) {
  const uint32_t zero = 0;
  sebpf_meta meta{};
  if (bpf_map_lookup_elem(fd, &zero, &meta) != 0) return Error::from_errno(errno, "read " + path);
  if (meta.abi_version != SEBPF_ABI_VERSION) {
    return Error(Errc::kFailedPrecondition,
                 "pinned state in " + path + " has ABI version " +
                     std::to_string(meta.abi_version) + ", this build uses " +
                     std::to_string(SEBPF_ABI_VERSION) +
                     "; detach with the version that wrote it, or remove the pin directory "
                     "(which ends enforcement)");
  }
  if (meta.netns_ino != own_netns_ino()) {
    return Error(Errc::kFailedPrecondition,
                 "pinned state in " + path + " was made in network namespace " +
                     std::to_string(meta.netns_ino) + " and this process is in " +
                     std::to_string(own_netns_ino()) +
                     ": its interface attachments are named by ifindex, which means something "
                     "only there. Adopt it from that namespace (or use another pin directory)");
  }
  return meta;
}

// Why a program pinned under this build's id is not one this start may
// reuse with the maps it just adopted; empty if it is. It must be of the
// expected type and use no map but those and a read-only settings map
// (.rodata) holding exactly this start's settings. Only root can pin
// there, so a mismatch means the pins were moved or changed by hand (say,
// programs another pin directory's daemon loaded, which would enforce its
// maps' rules); loading anew is always safe.
std::string pinned_program_mismatch(int prog_fd, bpf_prog_type type,
                                    const std::set<uint32_t>& adopted_map_ids,
                                    std::span<const uint8_t> settings) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) {
    return "its information cannot be read: " + errno_text(errno);
  }
  if (info.type != static_cast<uint32_t>(type)) {
    return "it is of program type " + std::to_string(info.type) + ", not " + std::to_string(type);
  }
  std::vector<uint32_t> map_ids(info.nr_map_ids);
  bpf_prog_info maps{};
  maps.nr_map_ids = static_cast<uint32_t>(map_ids.size());
  maps.map_ids = reinterpret_cast<uintptr_t>(map_ids.data());
  len = sizeof maps;
  if (bpf_obj_get_info_by_fd(prog_fd, &maps, &len) != 0) {
    return "its maps cannot be listed: " + errno_text(errno);
  }
  for (const uint32_t id : map_ids) {
    if (adopted_map_ids.contains(id)) continue;
    UniqueFd map(bpf_map_get_fd_by_id(id));
    bpf_map_info map_info{};
    len = sizeof map_info;
    if (!map || bpf_obj_get_info_by_fd(map.get(), &map_info, &len) != 0) {
      return "its map " + std::to_string(id) + " cannot be read: " + errno_text(errno);
    }
    const std::string name = std::string(map_info.name) + " (map " + std::to_string(id) + ")";
    if (map_info.type != BPF_MAP_TYPE_ARRAY || map_info.max_entries != 1 ||
        map_info.value_size != settings.size() || !(map_info.map_flags & BPF_F_RDONLY_PROG)) {
      return "it uses " + name + ", which is none of the adopted maps";
    }
    std::vector<uint8_t> value(settings.size());
    const uint32_t zero = 0;
    if (bpf_map_lookup_elem(map.get(), &zero, value.data()) != 0 ||
        std::memcmp(value.data(), settings.data(), settings.size()) != 0) {
      return "its settings (" + name + ") are not this start's";
    }
  }
  return "";
}

}  // namespace

void Datapath::Impl::reuse_pinned_programs(bool all_maps_adopted) {
  if (config.pin_dir.empty() || !all_maps_adopted) return;
  const std::string dir = programs_dir(config) + "/" + build_id;
  std::set<uint32_t> adopted_map_ids;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel->obj) {
    bpf_map_info info{};
    uint32_t len = sizeof info;
    if (!bpf_map__is_internal(map) && bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len) == 0) {
      adopted_map_ids.insert(info.id);
    }
  }
  // The section's size: the skeleton's struct may be longer (padding).
  const std::span settings(reinterpret_cast<const uint8_t*>(skel->rodata),
                           bpf_map__value_size(skel->maps.rodata));
  std::map<std::string, UniqueFd> found;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    const std::string path = dir + "/" + bpf_program__name(prog);
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd) return;  // none or not all: this process loads its own
    const std::string mismatch =
        pinned_program_mismatch(fd.get(), bpf_program__type(prog), adopted_map_ids, settings);
    if (!mismatch.empty()) {
      notes.push_back(
          {AdoptionNote::Level::kWarning,
           "pinned program " + path + " not reused (this start loads its own): " + mismatch});
      return;
    }
    found.emplace(bpf_program__name(prog), std::move(fd));
  }
  bpf_object__for_each_program(prog, skel->obj) bpf_program__set_autoload(prog, false);
  reused_programs = std::move(found);
}

void Datapath::Impl::pin_programs() {
  // Pinned complete or not at all: a start reuses only a complete set.
  const std::string dir = programs_dir(config) + "/" + build_id;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    const std::string path = dir + "/" + bpf_program__name(prog);
    if (ec || bpf_obj_pin(bpf_program__fd(prog), path.c_str()) != 0) {
      notes.push_back({AdoptionNote::Level::kWarning,
                       "programs not pinned (the next start loads them anew): " + path + ": " +
                           (ec ? ec.message() : errno_text(errno))});
      fs::remove_all(dir, ec);
      return;
    }
  }
}

void Datapath::Impl::unpin_other_builds_programs() {
  std::error_code ec;
  std::vector<fs::path> others;
  for (fs::directory_iterator it(programs_dir(config), ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().filename() != build_id) others.push_back(it->path());
  }
  for (const fs::path& other : others) {
    // The kernel frees them once no link or filter holds them.
    fs::remove_all(other, ec);
    notes.push_back(
        {ec ? AdoptionNote::Level::kWarning : AdoptionNote::Level::kInfo,
         "programs of build " + other.filename().string() +
             (ec ? " left pinned: " + ec.message() : " unpinned: nothing runs them any more")});
  }
}

Result<bool> Datapath::Impl::reuse_pinned_maps() {
  // Meta first: nothing else is trusted before its ABI version is.
  const std::string meta_path = maps_dir(config) + "/" + kMetaMapName;
  UniqueFd meta_fd(bpf_obj_get(meta_path.c_str()));
  if (!meta_fd) return Error::from_errno(errno, "open pinned " + meta_path);
  SEBPF_ASSIGN_OR_RETURN(sebpf_meta meta, read_pinned_meta(meta_fd.get(), meta_path));
  config.max_attachments = meta.max_attachments;
  config.max_host_rules = meta.max_host_rules;
  config.max_prefix_rules = meta.max_prefix_rules;
  config.max_flows_per_attachment = meta.max_flows_per_attachment;

  // Maps that state pinned before they existed lacks, with their sizes.
  // They start empty (every attachment's whole DHCP burst; no learned host
  // in the table; no namespace watched until the daemon's adoption
  // guards each cgroup attachment's), and libbpf pins each when it is made.
  const std::map<const bpf_map*, uint32_t> newer_maps = {
      {skel->maps.sebpf_dhcp_budget, 2 * config.max_attachments},
      {skel->maps.sebpf_learned, learned_buckets(config)},
      {skel->maps.sebpf_netns_watch, config.max_attachments},
      {skel->maps.sebpf_netns_events, netns_events_bytes(config)},
  };
  bool all_adopted = true;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel->obj) {
    if (bpf_map__is_internal(map)) continue;  // .rodata: ours, not pinned
    const std::string path = maps_dir(config) + "/" + bpf_map__name(map);
    UniqueFd fd(bpf_obj_get(path.c_str()));
    const auto newer = newer_maps.find(map);
    if (!fd && errno == ENOENT && newer != newer_maps.end()) {
      bpf_map__set_max_entries(map, newer->second);
      if (int err = bpf_map__set_pin_path(map, path.c_str()); err != 0) {
        return Error::from_errno(err, "pin new map " + path);
      }
      all_adopted = false;
      continue;
    }
    if (!fd) {
      return Error(Errc::kFailedPrecondition,
                   "pinned state in " + config.pin_dir + " is incomplete: " + path +
                       " is missing. Remove the pin directory to start afresh (this ends "
                       "enforcement of what is still attached)");
    }
    if (int err = bpf_map__reuse_fd(map, fd.get()); err != 0) {
      return Error::from_errno(err, "reuse pinned map " + path);
    }
  }
  return all_adopted;
}

std::vector<bpf_map*> Datapath::Impl::maps_in_pin_order() const {
  bpf_map* map = nullptr;
  bpf_map* meta = skel->maps.sebpf_meta;
  std::vector<bpf_map*> order;
  bpf_object__for_each_map(map, skel->obj) {
    if (!bpf_map__is_internal(map) && map != meta) order.push_back(map);
  }
  order.push_back(meta);
  return order;
}

Status Datapath::Impl::pin_maps() {
  // State without the meta map is the leftover of an interrupted first
  // start.
  std::error_code ec;
  for (fs::directory_iterator it(maps_dir(config), ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code not_removed;  // one of our names left fails its pin below, saying why
    fs::remove(it->path(), not_removed);
  }
  const std::vector<bpf_map*> order = maps_in_pin_order();
  for (bpf_map* m : order) {
    const std::string path = maps_dir(config) + "/" + bpf_map__name(m);
    if (int err = bpf_map__pin(m, path.c_str()); err != 0) {
      for (bpf_map* done : order) {
        if (done == m) break;
        bpf_map__unpin(done, nullptr);
      }
      return Error::from_errno(err, "pin map " + path);
    }
  }
  return ok_status();
}

Status Datapath::Impl::adopt_attachments() {
  SEBPF_RETURN_IF_ERROR(table->load_slots());
  flow_tables->adopt();
  SEBPF_ASSIGN_OR_RETURN(CgroupHooks::Adopted hooks, cgroup_hooks->adopt());
  notes.insert(notes.end(), hooks.notes.begin(), hooks.notes.end());
  std::set<uint64_t> live_cgroups(hooks.live.begin(), hooks.live.end());
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, table->all());
  for (const AttachmentRecord& r : records) {
    if (r.key.kind == TargetKind::kCgroup) {
      if (live_cgroups.erase(r.key.id)) continue;
      auto why = hooks.dropped.find(r.key.id);
      notes.push_back({AdoptionNote::Level::kInfo,
                       to_string(r.key) + " removed: " +
                           (why != hooks.dropped.end() ? why->second : "it has no links")});
      SEBPF_RETURN_IF_ERROR(remove_attachment(r));
      continue;
    }
    // Replacing our filters in place switches them to the new programs
    // without a moment unfiltered. An ifindex reused by a new interface
    // while no process held the state must not inherit the old policy.
    const Attachment a = to_attachment(r);
    const uint32_t ifindex = static_cast<uint32_t>(r.key.id);
    if (std::string problem = tc_hooks->check_same_interface(ifindex); !problem.empty()) {
      notes.push_back({AdoptionNote::Level::kInfo, to_string(r.key) + " removed: " + problem});
      // Not our interface (any more): leave whatever filters it has alone.
      SEBPF_RETURN_IF_ERROR(remove_attachment(r, /*unhook=*/false));
      continue;
    }
    // Fail closed: if the switch fails, the filter already there keeps
    // enforcing with the previous process's programs on the same maps.
    if (Status s = tc_hooks->attach(ifindex, a.direction); !s.ok()) {
      notes.push_back(
          {AdoptionNote::Level::kWarning,
           to_string(r.key) + " kept on the previous programs: " + s.error().message()});
    }
  }
  // Links left without a record: a detach was interrupted.
  for (uint64_t id : live_cgroups) {
    notes.push_back({AdoptionNote::Level::kInfo,
                     "cgroup:" + std::to_string(id) + " detached: it had links but no policy"});
    SEBPF_RETURN_IF_ERROR(cgroup_hooks->detach(id));
  }
  unpin_retired_maps();
  return ok_status();
}

// Maps an older build pinned that these programs do not use. Unpinned once
// every attachment is on the new programs; the kernel frees each when the
// last program that still holds it goes.
void Datapath::Impl::unpin_retired_maps() {
  static constexpr std::array kRetired = {
      // The port 53 exchanges of all attachments, in one LRU (2026-12-04),
      // before they moved into each attachment's own connection-tracking
      // tables.
      "sebpf_dns53",
  };
  for (const char* name : kRetired) {
    const std::string path = maps_dir(config) + "/" + name;
    std::error_code ec;
    if (fs::remove(path, ec)) {
      notes.push_back({AdoptionNote::Level::kInfo,
                       std::string("map ") + name + " unpinned: no program uses it any more"});
    } else if (ec) {
      notes.push_back(
          {AdoptionNote::Level::kWarning, "map " + path + " left pinned: " + ec.message()});
    }
  }
}

Datapath::PinDirs Datapath::pin_dirs() const {
  const Config& c = impl_->config;
  if (c.pin_dir.empty()) return {};
  return {c.pin_dir, maps_dir(c), links_dir(c)};
}

std::string Datapath::cgroup_links_dir(uint64_t cgroup_id) const {
  return impl_->cgroup_hooks->dir_for(cgroup_id);
}

Result<std::vector<std::string>> Datapath::restore_map_pins() {
  std::vector<std::string> restored;
  const Config& c = impl_->config;
  if (c.pin_dir.empty()) return restored;
  // Mounts the bpffs again if it went (under /sys/fs/bpf), as a start does.
  SEBPF_RETURN_IF_ERROR(ensure_bpffs_dir(c.pin_dir));
  std::error_code ec;
  fs::create_directories(maps_dir(c), ec);
  if (ec) return Error::from_errno(ec.value(), "create " + maps_dir(c));
  for (bpf_map* m : impl_->maps_in_pin_order()) {
    const std::string path = maps_dir(c) + "/" + bpf_map__name(m);
    if (fs::exists(path, ec)) continue;
    if (ec) return Error::from_errno(ec.value(), "look for the pinned map " + path);
    if (bpf_obj_pin(bpf_map__fd(m), path.c_str()) != 0) {
      return Error::from_errno(errno, "pin map " + path + " again");
    }
    restored.push_back(bpf_map__name(m));
  }
  return restored;
}

Result<std::vector<std::string>> Datapath::restore_cgroup_links(const AttachmentKey& key,
                                                                const std::string& path) {
  if (key.kind != TargetKind::kCgroup || !impl_->cgroup_hooks->links_missing(key.id)) {
    return std::vector<std::string>();
  }
  auto cgroup = open_cgroup(path);
  if (!cgroup.ok() || cgroup->id != key.id) return std::vector<std::string>();
  return impl_->cgroup_hooks->restore(key.id, cgroup->fd.get());
}

}  // namespace sebpf::datapath
