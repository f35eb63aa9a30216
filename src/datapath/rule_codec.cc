#include "datapath/rule_codec.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace sebpf::datapath {
namespace {

// Keys are read back from our own maps: a key that is not a valid prefix
// means the maps were written by something else.
Result<net::IpPrefix> key_prefix(const net::IpAddress& address, int length) {
  auto prefix = net::IpPrefix::make(address, length);
  if (!prefix.ok()) {
    return Error(Errc::kInternal, "rule map holds an invalid key: " + prefix.error().message());
  }
  return prefix;
}

std::array<uint8_t, 16> v6_bytes(const uint8_t (&addr)[16]) {
  std::array<uint8_t, 16> bytes{};
  std::memcpy(bytes.data(), addr, 16);
  return bytes;
}

}  // namespace

RuleMap rule_map_for(const net::IpPrefix& prefix) {
  const bool v4 = prefix.family() == net::Family::kIPv4;
  if (prefix.is_host()) return v4 ? RuleMap::kHost4 : RuleMap::kHost6;
  return v4 ? RuleMap::kPrefix4 : RuleMap::kPrefix6;
}

uint64_t encode_expiry(const std::optional<BootClock::time_point>& expires) {
  if (!expires) return SEBPF_EXPIRY_NEVER;
  const auto ns = expires->time_since_epoch().count();
  // 0 means "no rule": an expiry at boot time zero is simply expired.
  return ns <= 0 ? 1 : static_cast<uint64_t>(ns);
}

std::optional<BootClock::time_point> decode_expiry(uint64_t until) {
  if (until == SEBPF_EXPIRY_NEVER) return std::nullopt;
  return BootClock::time_point(std::chrono::nanoseconds(until));
}

void apply_rule(sebpf_rule& value, const Rule& rule) {
  const uint64_t until = encode_expiry(rule.expires);
  if (rule.action == Action::kAllow) {
    value.allow_until = until;
    value.flags = rule.learned ? value.flags | SEBPF_RULE_ALLOW_LEARNED
                               : value.flags & ~SEBPF_RULE_ALLOW_LEARNED;
  } else {
    value.deny_until = until;
  }
  value.prefixlen = static_cast<uint32_t>(rule.prefix.length());
}

std::vector<RuleEntry> merge_rules(std::span<const Rule> rules) {
  std::map<net::IpPrefix, sebpf_rule> merged;
  for (const Rule& rule : rules) {
    sebpf_rule& value = merged[rule.prefix];
    const uint64_t until = encode_expiry(rule.expires);
    if (rule.action == Action::kDeny) {
      value.deny_until = std::max<__u64>(value.deny_until, until);
    } else if (until > value.allow_until) {
      // The longer-lived allow stays, and says where it came from.
      value.allow_until = until;
      value.flags = rule.learned ? value.flags | SEBPF_RULE_ALLOW_LEARNED
                                 : value.flags & ~SEBPF_RULE_ALLOW_LEARNED;
    }
    value.prefixlen = static_cast<uint32_t>(rule.prefix.length());
  }
  std::vector<RuleEntry> entries;
  entries.reserve(merged.size());
  for (const auto& [prefix, value] : merged) entries.push_back({prefix, value});
  return entries;
}

bool same_entries(std::vector<RuleEntry> a, std::vector<RuleEntry> b, BootClock::duration slack) {
  if (a.size() != b.size()) return false;
  const auto by_prefix = [](const RuleEntry& x, const RuleEntry& y) { return x.prefix < y.prefix; };
  std::sort(a.begin(), a.end(), by_prefix);
  std::sort(b.begin(), b.end(), by_prefix);
  const auto slack_ns = static_cast<uint64_t>(std::chrono::nanoseconds(slack).count());
  const auto close = [&](uint64_t x, uint64_t y) {
    if ((x == 0) != (y == 0)) return false;  // a side one has and the other lacks
    return (x > y ? x - y : y - x) <= slack_ns;
  };
  for (size_t i = 0; i < a.size(); ++i) {
    const sebpf_rule& x = a[i].value;
    const sebpf_rule& y = b[i].value;
    if (a[i].prefix != b[i].prefix || x.prefixlen != y.prefixlen || x.flags != y.flags ||
        !close(x.allow_until, y.allow_until) || !close(x.deny_until, y.deny_until)) {
      return false;
    }
  }
  return true;
}

std::vector<Rule> split_entry(const net::IpPrefix& prefix, const sebpf_rule& value) {
  std::vector<Rule> rules;
  if (value.allow_until) {
    rules.push_back({prefix, Action::kAllow, decode_expiry(value.allow_until),
                     (value.flags & SEBPF_RULE_ALLOW_LEARNED) != 0});
  }
  if (value.deny_until) rules.push_back({prefix, Action::kDeny, decode_expiry(value.deny_until)});
  return rules;
}

sebpf_host4_key host4_key(uint32_t ruleset, const net::IpPrefix& prefix) {
  return {ruleset, prefix.address().v4_network_order()};
}

sebpf_host6_key host6_key(uint32_t ruleset, const net::IpPrefix& prefix) {
  sebpf_host6_key key{};
  key.ruleset = ruleset;
  std::memcpy(key.addr, prefix.address().bytes().data(), 16);
  return key;
}

sebpf_prefix4_key prefix4_key(uint32_t ruleset, const net::IpPrefix& prefix) {
  return {static_cast<uint32_t>(SEBPF_RULESET_BITS + prefix.length()), ruleset,
          prefix.address().v4_network_order()};
}

sebpf_prefix6_key prefix6_key(uint32_t ruleset, const net::IpPrefix& prefix) {
  sebpf_prefix6_key key{};
  key.prefixlen = static_cast<uint32_t>(SEBPF_RULESET_BITS + prefix.length());
  key.ruleset = ruleset;
  std::memcpy(key.addr, prefix.address().bytes().data(), 16);
  return key;
}

Result<net::IpPrefix> prefix_of(const sebpf_host4_key& key) {
  return key_prefix(net::IpAddress::v4(key.addr), 32);
}

Result<net::IpPrefix> prefix_of(const sebpf_host6_key& key) {
  return key_prefix(net::IpAddress::v6(v6_bytes(key.addr)), 128);
}

Result<net::IpPrefix> prefix_of(const sebpf_prefix4_key& key) {
  return key_prefix(net::IpAddress::v4(key.addr),
                    static_cast<int>(key.prefixlen) - SEBPF_RULESET_BITS);
}

Result<net::IpPrefix> prefix_of(const sebpf_prefix6_key& key) {
  return key_prefix(net::IpAddress::v6(v6_bytes(key.addr)),
                    static_cast<int>(key.prefixlen) - SEBPF_RULESET_BITS);
}

}  // namespace sebpf::datapath
