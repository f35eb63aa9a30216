// Each attachment's own connection-tracking tables (inbound flows, learned
// connections, reply fragments): inner maps of sebpf_conntrack at the
// attachment's slot. Own tables mean a workload that opens, receives or
// forges more flows than its share can only evict its own.
//
// Every update of an array of maps waits for an RCU grace period (5-15 ms
// here), and making a slot's three tables takes about as long again, so
// tables stay with their slot when an attachment leaves it and are
// emptied for the next one, which then attaches without that wait. New
// tables go in for several slots at once, made ahead by a thread of their
// own while attaches go on (an attach waits only when it outruns it);
// sweeps drop the tables of free slots beyond a few spares, a slot at a
// time.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "datapath/shared_layout.h"

namespace sebpf::datapath {

// Not thread-safe but for its own maker thread: one owner (the Datapath)
// calls it.
class FlowTables {
 public:
  // Free slots with tables that sweeps keep. While attaches come, the
  // maker keeps one fewer (an attachment's own tables and the spares make
  // this many, so a detach leaves as many spares as sweeps keep); an
  // attach that outruns it makes its own with those of the next free
  // slots, this many in all, in one grace period.
  static constexpr uint32_t kTablesAhead = 16;

  // outer_fd: sebpf_conntrack. flows_per_attachment sizes each
  // attachment's flow and learned-connection tables; its fragment table
  // gets an eighth (at least 64).
  FlowTables(int outer_fd, uint32_t max_attachments, uint32_t flows_per_attachment);
  // Waits for the tables being made ahead, if any (at most one install).
  ~FlowTables();
  FlowTables(const FlowTables&) = delete;
  FlowTables& operator=(const FlowTables&) = delete;

  // After adoption: learns which slots have tables, from the pinned map. A
  // slot in use always has them (they go in before its record).
  void adopt();
  // Gives `slot` (taken, in slot_used) empty tables: the ones it kept or
  // the maker put in ahead, emptied, or new ones, made together with those
  // of the next free slots (kTablesAhead in all). Called before the slot's
  // attachment record exists, so its first packet already finds them.
  // Then has the maker put tables in for the next attaches, if fewer than
  // kTablesAhead - 1 free slots have them.
  Status prepare(uint32_t slot, const std::vector<bool>& slot_used);
  // Drops the tables of at most `most` free slots, keeping those of the
  // lowest `spare` (the slots attaches take next); the kernel frees them
  // once no program uses them. Each slot costs three grace periods, so a
  // caller holding a lock keeps `most` small. Waits for the maker to be
  // done first. Returns how many slots lost their tables.
  Result<size_t> trim(const std::vector<bool>& slot_used, uint32_t spare, uint32_t most);

  // Forgets which of the flows the slot's workload opened to any of
  // `remote_addrs` (as the keys hold them: IPv4 v4-mapped) were opened
  // under a learned allow, so that, the allow gone, their next packet is
  // judged like any other instead of kept: a TCP connection's entry goes,
  // a UDP flow's becomes SEBPF_OPENED_UDP_OTHER. Returns how many.
  Result<size_t> forget_learned_connections(
      uint32_t slot, std::span<const std::array<uint8_t, 16>> remote_addrs) const;

 private:
  // At most kTablesAhead, held inline: the maker allocates nothing, so a
  // process forked while it works (a test's child) finds no allocator lock
  // held.
  using Slots = absl::InlinedVector<uint32_t, kTablesAhead>;

  // The lowest free slots from `from` on that have no tables and none
  // coming, at most `most`; marked as coming. With mu_ held.
  Slots claim_slots_locked(uint32_t from, uint32_t most);
  // How many free slots have tables, or have them coming. With mu_ held.
  uint32_t spares_locked() const;
  // Makes and installs the slots' tables (no lock held: the kernel's
  // work), then records them as having tables or, on failure, none.
  Status install(std::unique_lock<std::mutex>& lock, const Slots& slots);
  // The maker thread: each time prepare() finds fewer than kTablesAhead - 1
  // spares, installs the tables of as many more free slots, in one batch.
  void make_ahead();
  Result<UniqueFd> open_table(uint32_t slot, sebpf_track_table table) const;
  Status empty(uint32_t slot) const;

  const int outer_fd_;
  const uint32_t flows_;
  const uint32_t frags_;

  // The owner's calls and the maker share these.
  mutable std::mutex mu_;
  std::condition_variable changed_;  // installs ended, work wanted, stopping
  std::vector<bool> has_tables_;     // by slot
  std::vector<bool> coming_;         // by slot: an install is under way
  std::vector<bool> slot_used_;      // by slot, as the owner last said
  bool ahead_wanted_ = false;
  bool stopping_ = false;
  std::thread maker_;  // last: started once the rest is set up
};

}  // namespace sebpf::datapath
