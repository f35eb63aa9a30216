// Each attachment's own connection-tracking tables (inbound flows, learned
// connections, reply fragments): inner maps of sebpf_conntrack at the
// attachment's slot. Own tables mean a workload that opens, receives or
// forges more flows than its share can only evict its own.
//
// Every update of an array of maps waits for an RCU grace period (~8 ms
// here), so tables stay with their slot when an attachment leaves it and
// are emptied for the next one, which then attaches without that wait;
// new tables go in for several slots at once; sweeps drop the tables of
// free slots beyond a few spares, a slot at a time.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "datapath/shared_layout.h"

namespace sebpf::datapath {

class FlowTables {
 public:
  // Slots whose tables one grace period installs, and free slots whose
  // tables sweeps keep: an attach waits for at most one grace period in
  // this many, however many attach at once.
  static constexpr uint32_t kTablesAhead = 16;

  // outer_fd: sebpf_conntrack. flows_per_attachment sizes each
  // attachment's flow and learned-connection tables; its fragment table
  // gets an eighth (at least 64).
  FlowTables(int outer_fd, uint32_t max_attachments, uint32_t flows_per_attachment);

  // After adoption: learns which slots have tables, from the pinned map. A
  // slot in use always has them (they go in before its record).
  void adopt();
  // Gives `slot` (taken, in slot_used) empty tables: the ones it kept,
  // emptied, or new ones, made together with those of the next free slots
  // (kTablesAhead in all). Called before the slot's attachment record
  // exists, so its first packet already finds them.
  Status prepare(uint32_t slot, const std::vector<bool>& slot_used);
  // Drops the tables of at most `most` free slots, keeping those of the
  // lowest `spare` (the slots attaches take next); the kernel frees them
  // once no program uses them. Each slot costs three grace periods, so a
  // caller holding a lock keeps `most` small. Returns how many slots lost
  // their tables.
  Result<size_t> trim(const std::vector<bool>& slot_used, uint32_t spare, uint32_t most);

  // Forgets which of the flows the slot's workload opened to any of
  // `remote_addrs` (as the keys hold them: IPv4 v4-mapped) were opened
  // under a learned allow, so that, the allow gone, their next packet is
  // judged like any other instead of kept: a TCP connection's entry goes,
  // a UDP flow's becomes SEBPF_OPENED_UDP_OTHER. Returns how many.
  Result<size_t> forget_learned_connections(
      uint32_t slot, std::span<const std::array<uint8_t, 16>> remote_addrs) const;

 private:
  Result<UniqueFd> open_table(uint32_t slot, sebpf_track_table table) const;
  Status install(const std::vector<uint32_t>& slots);
  Status empty(uint32_t slot) const;

  int outer_fd_;
  uint32_t flows_;
  uint32_t frags_;
  std::vector<bool> has_tables_;  // by slot
};

}  // namespace sebpf::datapath
