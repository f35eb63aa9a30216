// Reads and writes rule entries in the four rule maps, for one rule set at
// a time. A rule set id is part of every key, so many attachments (and the
// two sides of an atomic replacement) share the same maps.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/result.h"
#include "datapath/learned_table.h"
#include "datapath/rule_codec.h"

namespace sebpf::datapath {

struct RuleMapFds {
  int host4 = -1;
  int host6 = -1;
  int prefix4 = -1;
  int prefix6 = -1;
};

// With a learned-host table, the hosts the DNS proxy learned (an allow,
// learned, and nothing else on the host) go there instead of the host
// maps; reads, erases and walks cover both. Host-map entries of that kind
// left by a version without the table still count until they expire.
class RuleStore {
 public:
  explicit RuleStore(RuleMapFds fds, LearnedTable* learned = nullptr)
      : fds_(fds), learned_(learned) {}

  Result<std::optional<sebpf_rule>> read(uint32_t ruleset, const net::IpPrefix& prefix) const;
  Status write(uint32_t ruleset, const RuleEntry& entry);
  // Writes many entries; hash maps take them in batches.
  Status write_all(uint32_t ruleset, std::span<const RuleEntry> entries);
  Status erase(uint32_t ruleset, const net::IpPrefix& prefix);

  // Every entry of one rule set.
  Result<std::vector<RuleEntry>> read_all(uint32_t ruleset) const;
  // Every entry of every rule set, for the sweeper.
  struct Owned {
    uint32_t ruleset;
    RuleEntry entry;
    bool in_learned_table = false;  // else in a rule map
  };
  Result<std::vector<Owned>> read_everything() const;
  // Erases that entry where it is, and only there: a host learned before
  // the table existed may sit in a host map, expired, while the same host
  // learned again lives on in the table.
  Status erase_owned(const Owned& owned);
  Status erase_ruleset(uint32_t ruleset);

 private:
  // Whether `entry` belongs in the learned-host table.
  bool goes_to_table(const RuleEntry& entry) const;
  // The entry for exactly `prefix` in the rule maps, not the table.
  Status erase_from_maps(uint32_t ruleset, const net::IpPrefix& prefix);

  RuleMapFds fds_;
  LearnedTable* learned_;
};

}  // namespace sebpf::datapath
