// The decision of the packet programs, TC and cgroup_skb alike, on crafted
// packets: every mode, longest prefix, allow+deny tie, expiry, NAT64,
// malformed and source-routed packets, whole-policy replaces.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "program_fixture.h"
#include "verdict_packets.h"

namespace sebpf::testing {
namespace {

using datapath::BootClock;
using datapath::Mode;
using std::chrono::seconds;

class VerdictTest : public ProgramTest {};

TEST_P(VerdictTest, DisabledAllowsEverythingAndCounts) {
  set_mode(Mode::kDisabled);
  deny("198.51.100.0/24");
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(udp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_MODE_DISABLED), 2U);
}

TEST_P(VerdictTest, AllowlistDeniesEverythingUnlisted) {
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(udp4("198.51.100.1", 123)));
  EXPECT_FALSE(out(icmp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));
  EXPECT_FALSE(out(udp6("2001:db8:1::1", 123)));
  EXPECT_FALSE(out(icmp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_DEFAULT), 6U);
}

TEST_P(VerdictTest, AllowlistAllowsListedHostsOnly) {
  allow("198.51.100.10");
  allow("2001:db8:1::10");
  EXPECT_TRUE(out(tcp4("198.51.100.10")));
  EXPECT_TRUE(out(udp4("198.51.100.10", 123)));
  EXPECT_TRUE(out(icmp4("198.51.100.10")));
  EXPECT_FALSE(out(tcp4("198.51.100.11")));
  EXPECT_TRUE(out(tcp6("2001:db8:1::10")));
  EXPECT_TRUE(out(icmp6("2001:db8:1::10")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::11")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_RULE), 5U);
  EXPECT_EQ(count(SEBPF_REASON_DENY_DEFAULT), 2U);
}

TEST_P(VerdictTest, LongestPrefixDecides) {
  allow("203.0.113.0/24");
  deny("203.0.113.128/25");
  allow("203.0.113.192/26");
  allow("203.0.113.130");
  EXPECT_TRUE(out(tcp4("203.0.113.1")));     // /24 allow
  EXPECT_FALSE(out(tcp4("203.0.113.129")));  // /25 deny
  EXPECT_TRUE(out(tcp4("203.0.113.130")));   // /32 allow beats /25 deny
  EXPECT_TRUE(out(tcp4("203.0.113.200")));   // /26 allow beats /25 deny
  allow("2001:db8::/32");
  deny("2001:db8:bad::/48");
  allow("2001:db8:bad:1::/64");
  EXPECT_TRUE(out(tcp6("2001:db8:1::1")));
  EXPECT_FALSE(out(tcp6("2001:db8:bad::1")));
  EXPECT_TRUE(out(tcp6("2001:db8:bad:1::1")));
}

TEST_P(VerdictTest, ZeroLengthPrefixCoversEverything) {
  allow("0.0.0.0/0");
  deny("198.51.100.0/24");
  EXPECT_TRUE(out(tcp4("203.0.113.9")));
  EXPECT_FALSE(out(tcp4("198.51.100.9")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));  // ::/0 was not allowed
  allow("::/0");
  EXPECT_TRUE(out(tcp6("2001:db8:1::1")));
}

TEST_P(VerdictTest, AllowAndDenyOnOnePrefixMeansDeny) {
  allow("198.51.100.0/24");
  deny("198.51.100.0/24");
  allow("203.0.113.5");
  deny("203.0.113.5");
  allow("2001:db8:1::/48");
  deny("2001:db8:1::/48");
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp4("203.0.113.5")));
  EXPECT_FALSE(out(tcp6("2001:db8:1::1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 3U);
}

TEST_P(VerdictTest, DenylistAllowsAllButDenied) {
  set_mode(Mode::kDenylist);
  deny("198.51.100.0/24");
  deny("2001:db8:bad::1");
  allow("198.51.100.7");
  EXPECT_TRUE(out(tcp4("203.0.113.1")));
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(tcp4("198.51.100.7")));
  EXPECT_FALSE(out(udp6("2001:db8:bad::1")));
  EXPECT_TRUE(out(udp6("2001:db8:bad::2")));
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_DEFAULT), 2U);
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 2U);
}

// 64:ff9b::c633:6407 is 198.51.100.7 through a NAT64 translator: the IPv4
// rules hold for it too, a deny in either family winning.
TEST_P(VerdictTest, Nat64DestinationsAreJudgedByTheirIpv4RulesToo) {
  set_mode(Mode::kDenylist);
  deny("198.51.100.0/24");
  EXPECT_FALSE(out(tcp6("64:ff9b::c633:6407")));
  EXPECT_TRUE(out(tcp6("64:ff9b::cb00:7107")));  // 203.0.113.7
  EXPECT_TRUE(out(tcp6("64:ff9b:1::c633:6407"))) << "outside the well-known /96";

  set_mode(Mode::kAllowlist);
  allow("203.0.113.7");
  EXPECT_TRUE(out(tcp6("64:ff9b::cb00:7107")));
  EXPECT_FALSE(out(tcp6("64:ff9b::cb00:7108")));
  deny("64:ff9b::cb00:7107");
  EXPECT_FALSE(out(tcp6("64:ff9b::cb00:7107"))) << "the IPv6 deny wins over the IPv4 allow";
  allow("64:ff9b::c633:6407");
  EXPECT_FALSE(out(tcp6("64:ff9b::c633:6407"))) << "the IPv4 deny wins over the IPv6 allow";
}

TEST_P(VerdictTest, BlockAllIgnoresAllowRules) {
  set_mode(Mode::kBlockAll);
  allow("0.0.0.0/0");
  allow("198.51.100.1");
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_FALSE(out(tcp4("203.0.113.1")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_BLOCK_ALL), 2U);
}

TEST_P(VerdictTest, ExpiredRuleNoLongerMatches) {
  const auto past = BootClock::now() - seconds(1);
  const auto future = BootClock::now() + seconds(3600);
  allow("198.51.100.1", past);
  allow("198.51.100.2", future);
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
  EXPECT_TRUE(out(tcp4("198.51.100.2")));
  // An expired host deny falls back to the prefix below it.
  allow("203.0.113.0/24");
  deny("203.0.113.9", past);
  EXPECT_TRUE(out(tcp4("203.0.113.9")));
  // An expired prefix allow falls back to the shorter prefix under it.
  deny("192.0.2.0/24");
  allow("192.0.2.128/25", past);
  allow("192.0.2.192/26", past);
  EXPECT_FALSE(out(tcp4("192.0.2.200")));
  EXPECT_EQ(count(SEBPF_REASON_DENY_RULE), 1U);
  // The same in IPv6, through many nested expired prefixes.
  allow("2001:db8::/32");
  for (int len : {40, 48, 56, 64, 80, 96, 112}) {
    deny("2001:db8::/" + std::to_string(len), past);
  }
  EXPECT_TRUE(out(tcp6("2001:db8::1")));
}

TEST_P(VerdictTest, RuleExpiresAtItsTime) {
  allow("198.51.100.1", BootClock::now() + std::chrono::milliseconds(300));
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(out(tcp4("198.51.100.1")));
}

TEST_P(VerdictTest, DeniedSideExpiresAndAllowStays) {
  const auto past = BootClock::now() - seconds(1);
  allow("198.51.100.0/24");
  deny("198.51.100.0/24", past);
  EXPECT_TRUE(out(tcp4("198.51.100.1")));
}

TEST_P(VerdictTest, TruncatedHeadersAreDenied) {
  set_mode(Mode::kDenylist);
  const auto packet = build_packet(tcp4("198.51.100.1"));
  EXPECT_TRUE(run_out(packet).allowed);
  EXPECT_FALSE(run_out(truncate(packet, 14 + 20 + 6)).allowed);  // TCP header cut
  EXPECT_EQ(count(SEBPF_REASON_DENY_MALFORMED), 1U);
}

// A source route makes the destination address only the first hop: in
// any enforcing mode the packet is dropped, whatever the rules say of it.
TEST_P(VerdictTest, SourceRoutedPacketsAreDenied) {
  allow("198.51.100.1");
  allow("2001:db8:1::1");
  PacketSpec v4 = tcp4("198.51.100.1");
  v4.ipv4_options = {1, 148, 4, 0, 0};  // NOOP, router alert (harmless)
  EXPECT_TRUE(out(v4));
  for (uint8_t type : {uint8_t{131}, uint8_t{137}}) {  // LSRR, SSRR
    v4.ipv4_options = {1, type, 7, 4, 203, 0, 113, 9};
    EXPECT_FALSE(out(v4)) << int(type);
  }
  v4.ipv4_options = {1, 68, 1};  // an option whose length is too short
  EXPECT_FALSE(out(v4));
  v4.ipv4_options = {0, 131, 7, 4, 203, 0, 113, 9};  // after END: not an option
  EXPECT_TRUE(out(v4));

  PacketSpec v6 = tcp6("2001:db8:1::1");
  v6.ipv6_routing_segments_left = 0;  // a spent route is harmless
  EXPECT_TRUE(out(v6));
  v6.ipv6_routing_segments_left = 1;
  EXPECT_FALSE(out(v6));
  set_mode(Mode::kDenylist);
  EXPECT_FALSE(out(v6));
  v4.ipv4_options = {131, 7, 4, 203, 0, 113, 9};
  EXPECT_FALSE(out(v4));
  set_mode(Mode::kDisabled);
  EXPECT_TRUE(out(v4));
}

TEST_P(VerdictTest, ReplacePolicySwapsModeAndRulesTogether) {
  allow("198.51.100.1");
  const std::vector<datapath::Rule> rules = {rule("203.0.113.0/24", datapath::Action::kDeny)};
  ASSERT_TRUE(dp_->replace_policy(key_, Mode::kDenylist, rules).ok());
  EXPECT_TRUE(out(tcp4("198.51.100.1")));  // denylist default
  EXPECT_FALSE(out(tcp4("203.0.113.1")));
  auto listed = dp_->rules(key_);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, rules);
}

// Two policies under which 198.51.100.7 is allowed and .8 denied; any mix of
// one's mode with the other's rules flips one of them. Packets run while
// the policy flips back and forth must never see a mix.
TEST_P(VerdictTest, ReplacePolicyIsAtomicForConcurrentPackets) {
  using datapath::Action;
  const std::vector<datapath::Rule> a = {rule("198.51.100.7", Action::kAllow)};
  const std::vector<datapath::Rule> b = {rule("198.51.100.8", Action::kDeny)};
  ASSERT_TRUE(dp_->replace_policy(key_, Mode::kAllowlist, a).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, runs{0};
  const auto p7 = build_packet(tcp4("198.51.100.7"));
  const auto p8 = build_packet(tcp4("198.51.100.8"));
  std::thread packets([&] {
    while (!stop) {
      if (!run_out(p7).allowed) ++mixed;
      if (run_out(p8).allowed) ++mixed;
      ++runs;
    }
  });
  bool replaced = true;
  for (int i = 0; i < 300 && replaced; ++i) {
    replaced = dp_->replace_policy(key_, Mode::kDenylist, b).ok() &&
               dp_->replace_policy(key_, Mode::kAllowlist, a).ok();
  }
  stop = true;
  packets.join();
  EXPECT_TRUE(replaced);
  EXPECT_GT(runs.load(), 0);
  EXPECT_EQ(mixed.load(), 0) << "packets saw one policy's mode with the other's rules";
}

INSTANTIATE_TEST_SUITE_P(Programs, VerdictTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

}  // namespace
}  // namespace sebpf::testing
