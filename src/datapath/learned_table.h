// Learned hosts (the allows the DNS proxy takes from answers) in a table
// the daemon writes with plain stores through mmap, and the programs
// search (map sebpf_learned). A kernel hash map costs ~0.5 us of system
// call per learned address (docs/benchmarks.md), most of what the DNS
// endpoint spends beyond a plain forwarder; a store costs a cache miss.
//
// Each (rule set, address) may sit in either of two buckets of
// SEBPF_LEARNED_WAYS slots, both named by sebpf_learned_hash, and goes to
// the emptier one. It holds at most max_hosts per family, as the host maps
// do, and is sized for twice that: a full pair of buckets is then next to
// impossible. Either way put() reports the table as full.
//
// One writer (the caller serialises), readers in the kernel at any time.
// A slot's seq is odd while the slot is rewritten; a reader takes a slot
// only if it read the same even seq before and after the slot's fields.
// A refresh of a held host rewrites only `until`, in one aligned store.
// x86-64 keeps stores in order and loads in order, so the programs need
// no barrier but the compiler's: the datapath uses the table only there.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/result.h"
#include "datapath/shared_layout.h"
#include "net/ip_prefix.h"

namespace sebpf::datapath {

class LearnedTable {
 public:
  // Over `buckets` (a power of two of them): the map's mmap, or plain
  // memory in tests. Zeroed memory is an empty table; one that holds hosts
  // already (pinned state) is counted.
  LearnedTable(std::span<sebpf_learned_bucket> buckets, uint32_t max_hosts);

  // Holds `address` for `ruleset` until `until` (boot-time ns), a refresh
  // if it is held already. kResourceExhausted when both buckets are full.
  Status put(uint32_t ruleset, const net::IpAddress& address, uint64_t until);
  // Starts loading the key's two buckets into the cache. A caller with a
  // batch of hosts asks for all of them before putting any, so that the
  // cache misses (two buckets of five lines each, anywhere in megabytes)
  // overlap instead of following one another (bench/learned_table_bench).
  void prefetch(uint32_t ruleset, const net::IpAddress& address) const;
  // Its `until`, if held.
  std::optional<uint64_t> get(uint32_t ruleset, const net::IpAddress& address) const;
  // Whether it was held.
  bool erase(uint32_t ruleset, const net::IpAddress& address);
  // Every host of the rule set; returns how many.
  size_t erase_ruleset(uint32_t ruleset);

  struct Entry {
    uint32_t ruleset;
    net::IpAddress address;
    uint64_t until;
  };
  // Every host held (of one rule set, if given).
  std::vector<Entry> entries(std::optional<uint32_t> ruleset = {}) const;

 private:
  struct Key {
    uint32_t ruleset;
    uint32_t family;
    uint8_t addr[16];
  };
  static Key key_of(uint32_t ruleset, const net::IpAddress& address);
  // The key's two buckets (the same one twice when the hash says so).
  std::pair<sebpf_learned_bucket*, sebpf_learned_bucket*> buckets_of(const Key& key) const;
  sebpf_learned_slot* find(const Key& key) const;
  void clear(sebpf_learned_slot& slot);
  uint32_t& count_of(uint32_t family) { return family == AF_INET ? count4_ : count6_; }

  std::span<sebpf_learned_bucket> buckets_;
  uint32_t max_hosts_;
  uint32_t count4_ = 0, count6_ = 0;  // hosts held per family
};

}  // namespace sebpf::datapath
