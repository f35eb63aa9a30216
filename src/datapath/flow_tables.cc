#include "datapath/flow_tables.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <functional>
#include <string>

#include "common/unique_fd.h"
#include "datapath/bpf_map_util.h"
#include "datapath/shared_layout.h"

namespace sebpf::datapath {
namespace {

// By enum sebpf_track_table; names as bpftool shows them.
constexpr const char* kTableNames[SEBPF_TRACK_TABLES] = {"sebpf_flows", "sebpf_conns",
                                                         "sebpf_frags"};

uint32_t table_index(uint32_t slot, sebpf_track_table table) {
  return slot * SEBPF_TRACK_TABLES + table;
}

// Matches struct sebpf_conntrack_table in bpf/sebpf_maps.bpf.h: the kernel
// refuses an inner map whose type, key, value or flags differ from the
// template's.
Result<UniqueFd> create_table(const char* name, uint32_t entries) {
  UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, name, sizeof(sebpf_track_key),
                             sizeof(sebpf_flow_value), entries, nullptr));
  if (!fd) {
    return map_error(errno,
                     std::string("create connection-tracking table ") + name + " of " +
                         std::to_string(entries) + " entries",
                     "the kernel has no memory for it; lower max_flows_per_attachment");
  }
  return fd;
}

// Makes the slots' tables and puts them in with one batch update: one
// grace period for the lot. On failure whatever did go in stays until the
// next install there replaces it (the slots are free, or the attach that
// asked fails).
Status make_and_install(int outer_fd, std::span<const uint32_t> slots, uint32_t flows,
                        uint32_t frags) {
  constexpr size_t kMost = FlowTables::kTablesAhead * SEBPF_TRACK_TABLES;
  absl::InlinedVector<UniqueFd, kMost> tables;
  absl::InlinedVector<uint32_t, kMost> keys;
  absl::InlinedVector<int, kMost> values;
  for (uint32_t slot : slots) {
    for (int t = 0; t < SEBPF_TRACK_TABLES; ++t) {
      const auto table = static_cast<sebpf_track_table>(t);
      SEBPF_ASSIGN_OR_RETURN(
          UniqueFd fd,
          create_table(kTableNames[t], table == SEBPF_TRACK_REPLY_FRAGS ? frags : flows));
      keys.push_back(table_index(slot, table));
      values.push_back(fd.get());
      tables.push_back(std::move(fd));
    }
  }
  uint32_t count = static_cast<uint32_t>(keys.size());
  if (bpf_map_update_batch(outer_fd, keys.data(), values.data(), &count, nullptr) != 0) {
    return Error::from_errno(
        errno, "install the connection-tracking tables of slot " + std::to_string(slots.front()));
  }
  return ok_status();
}

}  // namespace

FlowTables::FlowTables(int outer_fd, uint32_t max_attachments, uint32_t flows_per_attachment)
    : outer_fd_(outer_fd),
      flows_(flows_per_attachment),
      frags_(std::max(flows_per_attachment / 8, 64U)),
      has_tables_(max_attachments, false),
      coming_(max_attachments, false),
      slot_used_(max_attachments, false) {
  maker_ = std::thread([this] { make_ahead(); });
  pthread_setname_np(maker_.native_handle(), "sebpf-tables");
}

FlowTables::~FlowTables() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  maker_.join();
}

void FlowTables::adopt() {
  std::lock_guard lock(mu_);
  for (uint32_t slot = 0; slot < has_tables_.size(); ++slot) {
    // All three go in together; a slot that lost some to an interrupted
    // trim counts as having none, and prepare() replaces them all.
    bool all = true;
    for (int t = 0; t < SEBPF_TRACK_TABLES; ++t) {
      uint32_t inner_id = 0;
      const uint32_t index = table_index(slot, static_cast<sebpf_track_table>(t));
      all = all && bpf_map_lookup_elem(outer_fd_, &index, &inner_id) == 0;
    }
    has_tables_[slot] = all;
  }
}

Status FlowTables::prepare(uint32_t slot, const std::vector<bool>& slot_used) {
  std::unique_lock lock(mu_);
  if (slot >= has_tables_.size()) {
    return Error(Errc::kInternal, "slot " + std::to_string(slot) + " out of range");
  }
  for (uint32_t s = 0; s < slot_used_.size(); ++s) {
    slot_used_[s] = s < slot_used.size() && slot_used[s];
  }
  // The maker may be putting this slot's tables in: they will do.
  changed_.wait(lock, [&] { return !coming_[slot]; });
  const bool kept = has_tables_[slot];
  if (!kept) {
    // None, and none coming: this attach makes them, with those of the
    // next free slots.
    coming_[slot] = true;
    Slots slots{slot};
    for (uint32_t next : claim_slots_locked(slot + 1, kTablesAhead - 1)) slots.push_back(next);
    SEBPF_RETURN_IF_ERROR(install(lock, slots));
  }
  if (spares_locked() < kTablesAhead - 1) {
    ahead_wanted_ = true;
    changed_.notify_all();
  }
  lock.unlock();
  // The maker leaves slots with tables alone, so this needs no lock.
  return kept ? empty(slot) : ok_status();
}

FlowTables::Slots FlowTables::claim_slots_locked(uint32_t from, uint32_t most) {
  Slots slots;
  for (uint32_t slot = from; slot < has_tables_.size() && slots.size() < most; ++slot) {
    if (slot_used_[slot] || has_tables_[slot] || coming_[slot]) continue;
    coming_[slot] = true;
    slots.push_back(slot);
  }
  return slots;
}

uint32_t FlowTables::spares_locked() const {
  uint32_t spares = 0;
  for (uint32_t slot = 0; slot < has_tables_.size(); ++slot) {
    if (!slot_used_[slot] && (has_tables_[slot] || coming_[slot])) ++spares;
  }
  return spares;
}

Status FlowTables::install(std::unique_lock<std::mutex>& lock, const Slots& slots) {
  lock.unlock();
  Status made = make_and_install(outer_fd_, slots, flows_, frags_);
  lock.lock();
  for (uint32_t slot : slots) {
    has_tables_[slot] = made.ok();
    coming_[slot] = false;
  }
  changed_.notify_all();
  return made;
}

void FlowTables::make_ahead() {
  std::unique_lock lock(mu_);
  while (true) {
    changed_.wait(lock, [&] { return ahead_wanted_ || stopping_; });
    if (stopping_) return;
    ahead_wanted_ = false;
    const uint32_t spares = spares_locked();
    if (spares >= kTablesAhead - 1) continue;
    // As many as were taken since the last install: few slots a batch
    // when attaches come slowly, more when they come fast.
    const Slots slots = claim_slots_locked(0, kTablesAhead - 1 - spares);
    if (slots.empty()) continue;  // every slot in use or with tables
    // A failure is not this thread's to report: an attach that then finds
    // no tables makes its own, and its caller hears why they could not be.
    (void)install(lock, slots);
  }
}

Result<UniqueFd> FlowTables::open_table(uint32_t slot, sebpf_track_table table) const {
  const uint32_t index = table_index(slot, table);
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(outer_fd_, &index, &inner_id) != 0) {
    return Error::from_errno(errno,
                             "find a connection-tracking table of slot " + std::to_string(slot));
  }
  UniqueFd inner(bpf_map_get_fd_by_id(inner_id));
  if (!inner) return Error::from_errno(errno, "open a connection-tracking table");
  return inner;
}

// Entries of the slot's last attachment could never match the next one
// (keys carry the attachment serial), but they would take its room.
Status FlowTables::empty(uint32_t slot) const {
  constexpr uint32_t kBatch = 1024;
  std::vector<sebpf_track_key> keys(kBatch);
  std::vector<sebpf_flow_value> values(kBatch);
  for (int t = 0; t < SEBPF_TRACK_TABLES; ++t) {
    SEBPF_ASSIGN_OR_RETURN(UniqueFd inner, open_table(slot, static_cast<sebpf_track_table>(t)));
    uint32_t batch_token = 0;
    bool first = true;
    while (true) {
      uint32_t count = kBatch;
      const int err =
          bpf_map_lookup_and_delete_batch(inner.get(), first ? nullptr : &batch_token, &batch_token,
                                          keys.data(), values.data(), &count, nullptr);
      first = false;
      if (err != 0 && errno == ENOENT) break;  // the last batch (count may be > 0)
      if (err != 0) return Error::from_errno(errno, "empty a connection-tracking table");
    }
  }
  return ok_status();
}

Result<size_t> FlowTables::forget_learned_connections(
    uint32_t slot, std::span<const std::array<uint8_t, 16>> remote_addrs) const {
  if (remote_addrs.empty() || slot >= has_tables_.size()) return 0;
  {
    std::lock_guard lock(mu_);
    if (!has_tables_[slot]) return 0;
  }
  SEBPF_ASSIGN_OR_RETURN(UniqueFd conns, open_table(slot, SEBPF_TRACK_OPENED));
  std::vector<std::array<uint8_t, 16>> wanted(remote_addrs.begin(), remote_addrs.end());
  std::sort(wanted.begin(), wanted.end());
  // Read in batches, then delete: deleting while walking a hash table
  // would restart the walk.
  constexpr uint32_t kBatch = 1024;
  std::vector<sebpf_track_key> keys(kBatch), doomed;
  std::vector<sebpf_flow_value> values(kBatch), doomed_values;
  uint32_t batch_token = 0;
  for (bool first = true;; first = false) {
    uint32_t count = kBatch;
    const int err = bpf_map_lookup_batch(conns.get(), first ? nullptr : &batch_token, &batch_token,
                                         keys.data(), values.data(), &count, nullptr);
    if (err != 0 && errno != ENOENT) {
      return Error::from_errno(errno,
                               "read the learned connections of slot " + std::to_string(slot));
    }
    for (uint32_t i = 0; i < count; ++i) {
      if (keys[i].flow.kind != SEBPF_OPENED_LEARNED) continue;
      std::array<uint8_t, 16> remote;
      std::copy(std::begin(keys[i].flow.remote_addr), std::end(keys[i].flow.remote_addr),
                remote.begin());
      if (std::binary_search(wanted.begin(), wanted.end(), remote)) {
        doomed.push_back(keys[i]);
        doomed_values.push_back(values[i]);
      }
    }
    if (err != 0) break;  // ENOENT: that was the last batch
  }
  size_t forgotten = 0;
  for (size_t i = 0; i < doomed.size(); ++i) {
    const sebpf_track_key& key = doomed[i];
    // A UDP flow stays one the workload opened, only no longer kept:
    // otherwise the peer's next datagram would open an inbound flow, on
    // which the workload's datagrams are replies that pass the allowlist.
    // Written before the learned entry goes, so no datagram finds neither.
    if (key.flow.protocol == IPPROTO_UDP) {
      sebpf_track_key unkept = key;
      unkept.flow.kind = SEBPF_OPENED_UDP_OTHER;
      if (bpf_map_update_elem(conns.get(), &unkept, &doomed_values[i], BPF_ANY) != 0) {
        return Error::from_errno(errno, "mark a UDP flow as no longer learned");
      }
    }
    // ENOENT: it ended by itself (RST, or evicted) since it was read.
    if (bpf_map_delete_elem(conns.get(), &key) == 0) {
      ++forgotten;
    } else if (errno != ENOENT) {
      return Error::from_errno(errno, "forget a learned connection");
    }
  }
  return forgotten;
}

Result<size_t> FlowTables::trim(const std::vector<bool>& slot_used, uint32_t spare, uint32_t most) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] {
    return !ahead_wanted_ && std::none_of(coming_.begin(), coming_.end(), std::identity());
  });
  std::vector<uint32_t> free_with_tables;
  for (uint32_t slot = 0; slot < has_tables_.size(); ++slot) {
    const bool used = slot < slot_used.size() && slot_used[slot];
    if (!used && has_tables_[slot]) free_with_tables.push_back(slot);
  }
  size_t dropped = 0;
  // The highest first: attaches take the lowest free slot.
  while (free_with_tables.size() > spare && dropped < most) {
    const uint32_t slot = free_with_tables.back();
    free_with_tables.pop_back();
    // An array of maps has no batch delete: each table waits for its own
    // grace period.
    for (int t = 0; t < SEBPF_TRACK_TABLES; ++t) {
      const uint32_t index = table_index(slot, static_cast<sebpf_track_table>(t));
      if (bpf_map_delete_elem(outer_fd_, &index) != 0 && errno != ENOENT) {
        return Error::from_errno(
            errno, "drop the connection-tracking tables of slot " + std::to_string(slot));
      }
    }
    has_tables_[slot] = false;
    ++dropped;
  }
  return dropped;
}

}  // namespace sebpf::datapath
