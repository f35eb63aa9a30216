// How rules are laid out in the kernel maps, without touching the kernel:
// merging a rule list into one map entry per prefix, map keys, expiry
// encoding, and the way back. Pure functions, unit tested.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "datapath/shared_layout.h"
#include "datapath/types.h"
#include "net/ip_prefix.h"

namespace sebpf::datapath {

// The four rule maps. Host prefixes (/32, /128) go to hash maps, everything
// shorter to LPM tries, so the common learned-host rule costs one hash
// lookup and the tries hold only real prefixes.
enum class RuleMap : uint8_t { kHost4, kHost6, kPrefix4, kPrefix6 };
RuleMap rule_map_for(const net::IpPrefix& prefix);

// One map entry: a prefix with its allow and deny sides.
struct RuleEntry {
  net::IpPrefix prefix;
  sebpf_rule value{};
};

uint64_t encode_expiry(const std::optional<BootClock::time_point>& expires);
std::optional<BootClock::time_point> decode_expiry(uint64_t until);

// Sets the side of `value` that `rule` names. A rule that is already there
// gets the new expiry: re-adding a learned address refreshes it.
void apply_rule(sebpf_rule& value, const Rule& rule);

// Merges a rule list into one entry per prefix, sorted by prefix. When the
// list names the same prefix and action twice, the longer-lived one stays.
std::vector<RuleEntry> merge_rules(std::span<const Rule> rules);

// Whether two entry lists hold the same rules, in any order, their expiry
// times apart by at most `slack`: a start recomputes expiries from the
// wall-clock times the state file keeps, which differ from those written
// by however far the two clocks drifted apart since.
bool same_entries(std::vector<RuleEntry> a, std::vector<RuleEntry> b, BootClock::duration slack);

// The rules one entry holds: one or two (allow and deny on one prefix).
std::vector<Rule> split_entry(const net::IpPrefix& prefix, const sebpf_rule& value);

// Map keys. Each is the byte image the BPF side looks up.
sebpf_host4_key host4_key(uint32_t ruleset, const net::IpPrefix& prefix);
sebpf_host6_key host6_key(uint32_t ruleset, const net::IpPrefix& prefix);
sebpf_prefix4_key prefix4_key(uint32_t ruleset, const net::IpPrefix& prefix);
sebpf_prefix6_key prefix6_key(uint32_t ruleset, const net::IpPrefix& prefix);

// And back: the prefix a key stands for.
Result<net::IpPrefix> prefix_of(const sebpf_host4_key& key);
Result<net::IpPrefix> prefix_of(const sebpf_host6_key& key);
Result<net::IpPrefix> prefix_of(const sebpf_prefix4_key& key);
Result<net::IpPrefix> prefix_of(const sebpf_prefix6_key& key);

}  // namespace sebpf::datapath
