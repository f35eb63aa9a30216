#include "datapath/learned_table.h"

#include <sys/socket.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <string>

namespace sebpf::datapath {
namespace {

bool holds(const sebpf_learned_slot& slot, uint32_t ruleset, uint32_t family,
           const uint8_t (&addr)[16]) {
  return slot.ruleset == ruleset && slot.family == family &&
         std::memcmp(slot.addr, addr, sizeof addr) == 0;
}

size_t empty_slots(const sebpf_learned_bucket& bucket) {
  size_t n = 0;
  for (const sebpf_learned_slot& slot : bucket.slot) n += slot.ruleset == 0;
  return n;
}

}  // namespace

// A count that is not a power of two is cut down to one, so that masking a
// hash can never name a bucket past the end.
LearnedTable::LearnedTable(std::span<sebpf_learned_bucket> buckets, uint32_t max_hosts)
    : buckets_(buckets.first(std::bit_floor(buckets.size()))), max_hosts_(max_hosts) {
  for (const sebpf_learned_bucket& bucket : buckets_) {
    for (const sebpf_learned_slot& slot : bucket.slot) {
      if (slot.ruleset != 0) ++count_of(slot.family);
    }
  }
}

LearnedTable::Key LearnedTable::key_of(uint32_t ruleset, const net::IpAddress& address) {
  Key key{ruleset,
          static_cast<uint32_t>(address.family() == net::Family::kIPv4 ? AF_INET : AF_INET6),
          {}};
  std::memcpy(key.addr, address.bytes().data(), sizeof key.addr);
  return key;
}

std::pair<sebpf_learned_bucket*, sebpf_learned_bucket*> LearnedTable::buckets_of(
    const Key& key) const {
  const uint64_t hash = sebpf_learned_hash(key.ruleset, key.family, key.addr);
  const uint64_t mask = buckets_.size() - 1;
  return {&buckets_[hash & mask], &buckets_[(hash >> 32) & mask]};
}

sebpf_learned_slot* LearnedTable::find(const Key& key) const {
  if (buckets_.empty()) return nullptr;
  const auto [first, second] = buckets_of(key);
  for (sebpf_learned_bucket* bucket : {first, second}) {
    for (sebpf_learned_slot& slot : bucket->slot) {
      if (holds(slot, key.ruleset, key.family, key.addr)) return &slot;
    }
  }
  return nullptr;
}

// A rewrite between an odd and the next even seq: a reader that overlaps
// it sees the seq change and passes the slot by.
void LearnedTable::clear(sebpf_learned_slot& slot) {
  std::atomic_ref<uint32_t> seq(slot.seq);
  const uint32_t start = seq.load(std::memory_order_relaxed);
  seq.store(start + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::atomic_ref<uint32_t>(slot.ruleset).store(0, std::memory_order_relaxed);
  seq.store(start + 2, std::memory_order_release);
  --count_of(slot.family);
}

Status LearnedTable::put(uint32_t ruleset, const net::IpAddress& address, uint64_t until) {
  const Key key = key_of(ruleset, address);
  if (sebpf_learned_slot* held = find(key)) {
    std::atomic_ref<__u64>(held->until).store(until, std::memory_order_release);
    return ok_status();
  }
  const auto full = [&](const std::string& why) {
    return Error(Errc::kResourceExhausted, "no room for learned host " + address.to_string() +
                                               ": " + why + "; raise max_host_rules");
  };
  if (count_of(key.family) >= max_hosts_) {
    return full("the host rule table is full (it is shared by all attachments)");
  }
  if (buckets_.empty()) return full("the learned-host table has no buckets");
  const auto [first, second] = buckets_of(key);
  sebpf_learned_bucket* bucket = empty_slots(*second) > empty_slots(*first) ? second : first;
  for (sebpf_learned_slot& slot : bucket->slot) {
    if (slot.ruleset != 0) continue;
    std::atomic_ref<uint32_t> seq(slot.seq);
    const uint32_t start = seq.load(std::memory_order_relaxed);
    seq.store(start + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    slot.family = key.family;
    std::memcpy(slot.addr, key.addr, sizeof slot.addr);
    std::atomic_ref<__u64>(slot.until).store(until, std::memory_order_relaxed);
    std::atomic_ref<uint32_t>(slot.ruleset).store(ruleset, std::memory_order_relaxed);
    seq.store(start + 2, std::memory_order_release);
    ++count_of(key.family);
    return ok_status();
  }
  return full("both of its buckets in the learned-host table are full");
}

void LearnedTable::prefetch(uint32_t ruleset, const net::IpAddress& address) const {
  if (buckets_.empty()) return;
  constexpr size_t kCacheLine = 64;
  const auto [first, second] = buckets_of(key_of(ruleset, address));
  for (const sebpf_learned_bucket* bucket : {first, second}) {
    const auto* bytes = reinterpret_cast<const char*>(bucket);
    for (size_t at = 0; at < sizeof *bucket; at += kCacheLine) {
      __builtin_prefetch(bytes + at, /*rw=*/1);
    }
  }
}

std::optional<uint64_t> LearnedTable::get(uint32_t ruleset, const net::IpAddress& address) const {
  const sebpf_learned_slot* slot = find(key_of(ruleset, address));
  if (slot == nullptr) return std::nullopt;
  return slot->until;
}

bool LearnedTable::erase(uint32_t ruleset, const net::IpAddress& address) {
  sebpf_learned_slot* slot = find(key_of(ruleset, address));
  if (slot == nullptr) return false;
  clear(*slot);
  return true;
}

size_t LearnedTable::erase_ruleset(uint32_t ruleset) {
  size_t erased = 0;
  for (sebpf_learned_bucket& bucket : buckets_) {
    for (sebpf_learned_slot& slot : bucket.slot) {
      if (slot.ruleset != ruleset) continue;
      clear(slot);
      ++erased;
    }
  }
  return erased;
}

std::vector<LearnedTable::Entry> LearnedTable::entries(std::optional<uint32_t> ruleset) const {
  std::vector<Entry> out;
  for (const sebpf_learned_bucket& bucket : buckets_) {
    for (const sebpf_learned_slot& slot : bucket.slot) {
      if (slot.ruleset == 0 || (ruleset && slot.ruleset != *ruleset)) continue;
      std::array<uint8_t, 16> bytes{};
      std::memcpy(bytes.data(), slot.addr, bytes.size());
      uint32_t v4;
      std::memcpy(&v4, slot.addr, sizeof v4);
      out.push_back({slot.ruleset,
                     slot.family == AF_INET ? net::IpAddress::v4(v4) : net::IpAddress::v6(bytes),
                     slot.until});
    }
  }
  return out;
}

}  // namespace sebpf::datapath
