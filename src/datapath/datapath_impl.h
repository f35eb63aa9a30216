// The Datapath's insides, shared by datapath.cc (loading, attaching,
// rules) and pinned_state.cc (what a start adopts from the pin directory,
// and what it pins). Internal to the datapath library.
#pragma once

#include <bpf/libbpf.h>
#include <sys/mman.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "datapath/attachment_table.h"
#include "datapath/cgroup_hooks.h"
#include "datapath/datapath.h"
#include "datapath/flow_tables.h"
#include "datapath/learned_table.h"
#include "datapath/packet_socket_guard.h"
#include "datapath/program_ownership.h"
#include "datapath/rcu_barrier.h"
#include "datapath/rule_store.h"
#include "datapath/tc_hooks.h"
#include "sebpf_datapath.skel.h"

namespace sebpf::datapath {

struct SkeletonDeleter {
  void operator()(sebpf_datapath* skel) const { sebpf_datapath__destroy(skel); }
};

using Skeleton = std::unique_ptr<sebpf_datapath, SkeletonDeleter>;

// Where pinned state lives under config.pin_dir. The meta map, pinned
// last, marks the state complete.
inline constexpr const char* kMetaMapName = "sebpf_meta";
inline std::string maps_dir(const Config& c) { return c.pin_dir + "/maps"; }
inline std::string programs_dir(const Config& c) { return c.pin_dir + "/progs"; }
inline std::string links_dir(const Config& c) {
  return c.pin_dir.empty() ? "" : c.pin_dir + "/links";
}

// The inode of this process's network namespace (0 if unknown).
uint64_t own_netns_ino();

// Buckets for twice max_host_rules hosts, a power of two (1, unused,
// without the table: an array map cannot be empty).
uint32_t learned_buckets(const Config& config);

// The size of the ring buffer of namespace reports (sebpf_netns_events).
uint32_t netns_events_bytes(const Config& config);

// The learned-host map, mapped into this process for as long as it lives.
class MappedBuckets {
 public:
  MappedBuckets() = default;
  MappedBuckets(const MappedBuckets&) = delete;
  MappedBuckets& operator=(const MappedBuckets&) = delete;
  ~MappedBuckets() {
    if (!buckets_.empty()) munmap(buckets_.data(), buckets_.size_bytes());
  }
  Status map(int fd, uint32_t count) {
    void* at = mmap(nullptr, count * sizeof(sebpf_learned_bucket), PROT_READ | PROT_WRITE,
                    MAP_SHARED, fd, 0);
    if (at == MAP_FAILED) return Error::from_errno(errno, "mmap the learned-host table");
    buckets_ = {static_cast<sebpf_learned_bucket*>(at), count};
    return ok_status();
  }
  std::span<sebpf_learned_bucket> buckets() const { return buckets_; }

 private:
  std::span<sebpf_learned_bucket> buckets_;
};

struct Datapath::Impl {
  Config config;
  Skeleton skel;
  bool adopted = false;
  bool netns_isolated_flows = false;
  std::vector<AdoptionNote> notes;
  std::unique_ptr<AttachmentTable> table;
  MappedBuckets learned_memory;
  std::unique_ptr<LearnedTable> learned;  // null: learned hosts in the host maps
  std::unique_ptr<RuleStore> rules;
  std::unique_ptr<FlowTables> flow_tables;
  std::unique_ptr<CgroupHooks> cgroup_hooks;
  // Declared before the hooks that hold a reference to it.
  std::unique_ptr<ProgramOwnership> tc_owners;
  std::unique_ptr<TcHooks> tc_hooks;
  std::unique_ptr<PacketSocketGuard> packet_socket_guard;
  bool guarded_own_netns = false;
  std::optional<RcuBarrier> barrier;
  // Programs of this build and settings that an earlier process loaded
  // and pinned, by name: used instead of loading (and verifying) them
  // again. Empty when this process loaded its own.
  std::map<std::string, UniqueFd> reused_programs;
  std::string build_id;  // program_build_id()

  int program_fd(const bpf_program* prog) const {
    return reused_programs.empty() ? bpf_program__fd(prog)
                                   : reused_programs.at(bpf_program__name(prog)).get();
  }
  Status load();
  // Reuses the programs pinned under build_id, if every one is there, is
  // of its expected type and uses the adopted maps and this start's
  // settings, and every map was adopted (programs reference the maps they
  // were loaded with). Otherwise nothing changes: this process loads its
  // own (a pinned program that does not fit is noted).
  void reuse_pinned_programs(bool all_maps_adopted);
  // Pins this process's programs under build_id: a later start reuses
  // them. A failure is noted, not fatal (that start loads its own).
  void pin_programs();
  // Unpins the programs of other build ids: called once no link or filter
  // of ours runs them (the kernel frees each with its last user).
  void unpin_other_builds_programs();
  // Returns whether every map was adopted (none made anew for this build).
  Result<bool> reuse_pinned_maps();
  Status pin_maps();
  // Every map we pin, the meta map last: a pinned meta map marks complete
  // pinned state.
  std::vector<bpf_map*> maps_in_pin_order() const;
  Status adopt_attachments();
  void unpin_retired_maps();
  // unhook=false leaves the target alone: an ifindex that now names
  // another interface.
  Status remove_attachment(const AttachmentRecord& record, bool unhook = true);
  // A slot with its counters zeroed and empty connection-tracking tables.
  Result<uint32_t> take_slot();
  Result<Attachment> finish_attach(const AttachmentKey& key, sebpf_attachment value,
                                   const AttachOptions& options,
                                   const std::function<Status()>& hook_up);
};

}  // namespace sebpf::datapath
