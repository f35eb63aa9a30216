// The per-attachment state in the kernel: attachment configs (by cgroup id
// and by ifindex), their counters, and the id allocator in the meta map.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/result.h"
#include "datapath/types.h"

namespace sebpf::datapath {

struct AttachmentMapFds {
  int cgroup = -1;
  int interface = -1;
  int counters = -1;
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
  AttachmentTable(AttachmentMapFds fds, uint32_t max_attachments);

  // Rebuilds which slots are in use from the maps (after adoption).
  Status load_slots();

  Result<std::optional<sebpf_attachment>> read(const AttachmentKey& key) const;
  Result<sebpf_attachment> read_existing(const AttachmentKey& key) const;  // kNotFound if absent
  // Creates (fails with kAlreadyExists if present) or replaces the record.
  Status create(const AttachmentKey& key, const sebpf_attachment& value);
  Status replace(const AttachmentKey& key, const sebpf_attachment& value);
  Status erase(const AttachmentKey& key);
  Result<std::vector<AttachmentRecord>> all() const;

  // A free slot, taken; its counters are zeroed.
  Result<uint32_t> take_slot();
  void release_slot(uint32_t slot);

  // A fresh id for an attachment serial or a rule set, never handed out
  // before (kept in the pinned meta map, so it survives restarts).
  Result<uint32_t> next_id();

  Result<Counters> counters(uint32_t slot) const;

 private:
  int map_for(const AttachmentKey& key) const;

  AttachmentMapFds fds_;
  std::vector<bool> slot_used_;
};

}  // namespace sebpf::datapath
