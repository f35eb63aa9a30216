// How rules become map entries: which map, key images, merging allow and
// deny on one prefix, expiry encoding, and the way back.
#include "datapath/rule_codec.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace sebpf::datapath {
namespace {

using std::chrono::seconds;

net::IpPrefix P(const char* text) {
  auto p = net::IpPrefix::parse(text);
  EXPECT_TRUE(p.ok()) << text;
  return *p;
}

TEST(RuleCodecTest, HostsGoToHashMapsAndPrefixesToTries) {
  EXPECT_EQ(rule_map_for(P("192.0.2.1")), RuleMap::kHost4);
  EXPECT_EQ(rule_map_for(P("192.0.2.0/24")), RuleMap::kPrefix4);
  EXPECT_EQ(rule_map_for(P("0.0.0.0/0")), RuleMap::kPrefix4);
  EXPECT_EQ(rule_map_for(P("2001:db8::1")), RuleMap::kHost6);
  EXPECT_EQ(rule_map_for(P("2001:db8::/127")), RuleMap::kPrefix6);
}

TEST(RuleCodecTest, KeysCarryRulesetAndPrefix) {
  const auto k4 = prefix4_key(7, P("198.51.100.0/24"));
  EXPECT_EQ(k4.prefixlen, 32U + 24U);
  EXPECT_EQ(k4.ruleset, 7U);
  EXPECT_EQ(k4.addr, htonl(0xc6336400));
  const auto h4 = host4_key(9, P("203.0.113.5"));
  EXPECT_EQ(h4.ruleset, 9U);
  EXPECT_EQ(h4.addr, htonl(0xcb007105));
  const auto k6 = prefix6_key(3, P("2001:db8::/32"));
  EXPECT_EQ(k6.prefixlen, 32U + 32U);
  EXPECT_EQ(k6.addr[0], 0x20);
  EXPECT_EQ(k6.addr[3], 0xb8);
}

TEST(RuleCodecTest, KeysRoundTrip) {
  for (const char* text : {"198.51.100.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0"}) {
    const auto p = P(text);
    if (p.family() == net::Family::kIPv4) {
      EXPECT_EQ(*prefix_of(prefix4_key(1, p)), p);
    } else {
      EXPECT_EQ(*prefix_of(prefix6_key(1, p)), p);
    }
  }
  EXPECT_EQ(*prefix_of(host4_key(1, P("192.0.2.9"))), P("192.0.2.9"));
  EXPECT_EQ(*prefix_of(host6_key(1, P("2001:db8::9"))), P("2001:db8::9"));
}

TEST(RuleCodecTest, CorruptKeyIsAnInternalError) {
  sebpf_prefix4_key key{};
  key.prefixlen = 32 + 8;
  key.addr = htonl(0xc0000201);  // 192.0.2.1/8 has host bits set
  auto p = prefix_of(key);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), Errc::kInternal);
}

TEST(RuleCodecTest, ExpiryEncoding) {
  EXPECT_EQ(encode_expiry(std::nullopt), SEBPF_EXPIRY_NEVER);
  EXPECT_EQ(decode_expiry(SEBPF_EXPIRY_NEVER), std::nullopt);
  const BootClock::time_point t(seconds(100));
  EXPECT_EQ(encode_expiry(t), 100'000'000'000ULL);
  EXPECT_EQ(decode_expiry(100'000'000'000ULL), t);
  // 0 means "no rule", so a time at or before boot encodes as expired.
  EXPECT_EQ(encode_expiry(BootClock::time_point(seconds(0))), 1U);
}

TEST(RuleCodecTest, MergeKeepsBothActionsOfAPrefixInOneEntry) {
  const BootClock::time_point t(seconds(50));
  const std::vector<Rule> rules = {
      {P("192.0.2.0/24"), Action::kAllow, std::nullopt},
      {P("192.0.2.0/24"), Action::kDeny, t},
      {P("198.51.100.1"), Action::kAllow, t},
  };
  const auto entries = merge_rules(rules);
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(entries[0].prefix, P("192.0.2.0/24"));
  EXPECT_EQ(entries[0].value.allow_until, SEBPF_EXPIRY_NEVER);
  EXPECT_EQ(entries[0].value.deny_until, 50'000'000'000ULL);
  EXPECT_EQ(entries[0].value.prefixlen, 24U);
  EXPECT_EQ(entries[1].value.prefixlen, 32U);
  EXPECT_EQ(entries[1].value.deny_until, 0U);
}

TEST(RuleCodecTest, MergeOfDuplicatesKeepsTheLongerLived) {
  const std::vector<Rule> rules = {
      {P("192.0.2.1"), Action::kAllow, BootClock::time_point(seconds(10))},
      {P("192.0.2.1"), Action::kAllow, BootClock::time_point(seconds(30))},
      {P("192.0.2.1"), Action::kAllow, BootClock::time_point(seconds(20))},
  };
  const auto entries = merge_rules(rules);
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(entries[0].value.allow_until, 30'000'000'000ULL);
}

TEST(RuleCodecTest, SplitIsTheInverseOfMerge) {
  const std::vector<Rule> rules = {
      {P("2001:db8::/48"), Action::kAllow, std::nullopt},
      {P("2001:db8::/48"), Action::kDeny, BootClock::time_point(seconds(5))},
  };
  const auto entries = merge_rules(rules);
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(split_entry(entries[0].prefix, entries[0].value), rules);
}

// A start leaves a policy the kernel holds already as it is: the same
// rules in any order, expiries apart by clock drift, are the same; a rule
// more or less, another side, a learned flag or a longer drift are not.
TEST(RuleCodecTest, SameEntriesToleratesOrderAndDriftOnly) {
  const BootClock::time_point at(seconds(100));
  const std::vector<Rule> held = {
      {P("192.0.2.0/24"), Action::kAllow, std::nullopt},
      {P("198.51.100.7"), Action::kDeny, at},
      {P("2001:db8::1"), Action::kAllow, at, /*learned=*/true},
  };
  const auto same = [&](std::vector<Rule> want) {
    return same_entries(merge_rules(held), merge_rules(want), seconds(1));
  };
  EXPECT_TRUE(same({held[2], held[0], held[1]}));
  EXPECT_TRUE(same(
      {held[0], {P("198.51.100.7"), Action::kDeny, at + std::chrono::milliseconds(900)}, held[2]}));
  EXPECT_FALSE(same({held[0], {P("198.51.100.7"), Action::kDeny, at + seconds(2)}, held[2]}));
  EXPECT_FALSE(same({held[0], held[1]})) << "a learned host fewer";
  EXPECT_FALSE(
      same({held[0], held[1], held[2], {P("203.0.113.0/24"), Action::kDeny, std::nullopt}}));
  EXPECT_FALSE(same({held[0], {P("198.51.100.7"), Action::kAllow, at}, held[2]})) << "other side";
  EXPECT_FALSE(same({held[0], held[1], {P("2001:db8::1"), Action::kAllow, at}}))
      << "explicit, not learned";
  EXPECT_FALSE(same({held[0], {P("198.51.100.7"), Action::kDeny, std::nullopt}, held[2]}))
      << "never expires";
}

TEST(RuleCodecTest, ApplyRuleSetsOneSideAndRefreshesIt) {
  sebpf_rule v{};
  apply_rule(v, {P("192.0.2.0/24"), Action::kDeny, std::nullopt});
  apply_rule(v, {P("192.0.2.0/24"), Action::kAllow, BootClock::time_point(seconds(9))});
  EXPECT_EQ(v.deny_until, SEBPF_EXPIRY_NEVER);
  EXPECT_EQ(v.allow_until, 9'000'000'000ULL);
  apply_rule(v, {P("192.0.2.0/24"), Action::kAllow, BootClock::time_point(seconds(3))});
  EXPECT_EQ(v.allow_until, 3'000'000'000ULL);  // the newest expiry is the one in force
}

TEST(RuleCodecTest, LearnedFlagFollowsTheAllowSideThatStays) {
  const BootClock::time_point soon(seconds(10));
  const std::vector<Rule> explicit_wins = {
      {P("192.0.2.1"), Action::kAllow, soon, /*learned=*/true},
      {P("192.0.2.1"), Action::kAllow, std::nullopt},
  };
  auto entries = merge_rules(explicit_wins);
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(entries[0].value.flags & SEBPF_RULE_ALLOW_LEARNED, 0U);
  EXPECT_EQ(split_entry(entries[0].prefix, entries[0].value)[0].learned, false);

  const std::vector<Rule> learned_only = {{P("2001:db8::1"), Action::kAllow, soon, true}};
  entries = merge_rules(learned_only);
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(split_entry(entries[0].prefix, entries[0].value), learned_only);

  sebpf_rule v{};
  apply_rule(v, learned_only[0]);
  EXPECT_NE(v.flags & SEBPF_RULE_ALLOW_LEARNED, 0U);
  apply_rule(v, {P("2001:db8::1"), Action::kAllow, std::nullopt});  // a user's rule replaces it
  EXPECT_EQ(v.flags & SEBPF_RULE_ALLOW_LEARNED, 0U);
}

}  // namespace
}  // namespace sebpf::datapath
