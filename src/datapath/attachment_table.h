// The per-attachment state in the kernel: attachment configs (by cgroup id
// and by ifindex), their counters, and the id allocator in the meta map.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/result.h"
#include "datapath/rcu_barrier.h"
#include "datapath/types.h"

namespace sebpf::datapath {

struct AttachmentMapFds {
  int cgroup = -1;     // cgroup id -> sebpf_att_ref
  int interface = -1;  // ifindex -> sebpf_att_ref
  int records = -1;    // sebpf_att_records: two sebpf_attachment per slot
  int counters = -1;
  int dhcp_budget = -1;
  int netns_watch = -1;
  int meta = -1;
};

// The kernel's record of one attachment with its key.
struct AttachmentRecord {
  AttachmentKey key;
  sebpf_attachment value{};
};

Attachment to_attachment(const AttachmentRecord& record);
// The DNS endpoint fields of a config; errors on a wrong address family.
Status encode_dns_endpoint(const DnsEndpoint& dns, sebpf_attachment& value);

class AttachmentTable {
 public:
  // `barrier` must outlive the table.
  AttachmentTable(AttachmentMapFds fds, uint32_t max_attachments, const RcuBarrier& barrier);

  // Rebuilds which slots are in use from the maps (after adoption).
  Status load_slots();

  Result<std::optional<sebpf_attachment>> read(const AttachmentKey& key) const;
  Result<sebpf_attachment> read_existing(const AttachmentKey& key) const;  // kNotFound if absent
  // Creates (fails with kAlreadyExists if present) or replaces the record;
  // value.slot is the attachment's slot, value.owner is set here. Programs
  // see the old record or the new one, never a mix (see sebpf_att_ref);
  // a replace may wait for an RCU grace period first.
  Status create(const AttachmentKey& key, sebpf_attachment value);
  Status replace(const AttachmentKey& key, sebpf_attachment value);
  Status erase(const AttachmentKey& key);
  Result<std::vector<AttachmentRecord>> all() const;

  // A free slot, taken; its counters, DHCP budget and watched network
  // namespace are reset.
  Result<uint32_t> take_slot();
  void release_slot(uint32_t slot);
  const std::vector<bool>& slots_in_use() const { return slot_used_; }

  // A fresh id for an attachment serial or a rule set, never handed out
  // before (kept in the pinned meta map, so it survives restarts).
  Result<uint32_t> next_id();

  Result<Counters> counters(uint32_t slot) const;
  // Which network namespace (its cookie) the socket hooks hold the slot's
  // cgroup attachment to (struct sebpf_netns_watch); 0: none.
  Status watch_netns(uint32_t slot, uint64_t cookie);

 private:
  int map_for(const AttachmentKey& key) const;
  Result<std::optional<sebpf_att_ref>> read_ref(const AttachmentKey& key) const;
  Status write_ref(const AttachmentKey& key, sebpf_att_ref ref, uint64_t flags);
  Status write_record(uint32_t index, const sebpf_attachment& value);
  // Waits until no program can still read a record of `slot` other than
  // its current one, if one might.
  Status quiesce(uint32_t slot);

  AttachmentMapFds fds_;
  const RcuBarrier& barrier_;
  // Records read, by key: this table is their only writer (adoption
  // reloads), so they change only through create/replace/erase, which drop
  // the key. Saves two map lookups per read; the DNS proxy's learning reads
  // a record for every batch of answers.
  mutable std::map<AttachmentKey, sebpf_attachment> read_cache_;
  std::vector<bool> slot_used_;
  // Per slot: a program may still be reading a record of it that is not
  // the current one (after a replace or an erase). Cleared by a grace
  // period, for all slots at once.
  std::vector<bool> stale_readers_;
};

}  // namespace sebpf::datapath
