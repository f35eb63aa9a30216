// The daemon's model of a policy (rule merging, expiry, the kernel's view)
// and of its state file (what is written is read back, damage is refused).
#include <gtest/gtest.h>

#include <algorithm>

#include "daemon/attachment_record.h"
#include "daemon/policy_model.h"

namespace sebpf::daemon {
namespace {

using datapath::Action;
using std::chrono::seconds;

const WallClock::time_point kNow = WallClock::time_point(seconds(1'800'000'000));

net::IpPrefix prefix(const char* text) { return *net::IpPrefix::parse(text); }

TEST(DaemonPolicyModelTest, UpsertRefreshesTheSameRuleAndKeepsTheOtherAction) {
  Policy p;
  upsert_cidr(p, {prefix("198.51.100.0/24"), Action::kAllow, kNow + seconds(5)});
  upsert_cidr(p, {prefix("198.51.100.0/24"), Action::kDeny, std::nullopt});
  upsert_cidr(p, {prefix("198.51.100.0/24"), Action::kAllow, kNow + seconds(50)});
  ASSERT_EQ(p.cidrs.size(), 2U);
  EXPECT_EQ(p.cidrs[0].expires, kNow + seconds(50));

  EXPECT_TRUE(remove_cidr(p, prefix("198.51.100.0/24"), Action::kDeny).ok());
  EXPECT_EQ(p.cidrs.size(), 1U);
  EXPECT_EQ(remove_cidr(p, prefix("198.51.100.0/24"), Action::kDeny).error().code(),
            Errc::kNotFound);
  EXPECT_TRUE(remove_cidr(p, prefix("198.51.100.0/24"), std::nullopt).ok());
  EXPECT_TRUE(p.cidrs.empty());

  upsert_domain(p, {"example.org", Action::kAllow});
  upsert_domain(p, {"example.org", Action::kAllow});
  EXPECT_EQ(p.domains.size(), 1U);
  EXPECT_EQ(remove_domain(p, "example.org", Action::kDeny).error().code(), Errc::kNotFound);
  EXPECT_TRUE(remove_domain(p, "example.org", std::nullopt).ok());
}

TEST(DaemonPolicyModelTest, ExpiredRulesAreDroppedAndNeverGivenToTheKernel) {
  Policy p;
  upsert_cidr(p, {prefix("198.51.100.1/32"), Action::kAllow, kNow - seconds(1)});
  upsert_cidr(p, {prefix("198.51.100.2/32"), Action::kAllow, kNow + seconds(30)});
  upsert_cidr(p, {prefix("198.51.100.3/32"), Action::kDeny, std::nullopt});
  const auto boot_now = datapath::BootClock::time_point(seconds(1000));
  const auto rules = kernel_rules(p, kNow, boot_now);
  ASSERT_EQ(rules.size(), 2U);
  // Wall-clock expiry becomes the same distance on the boot clock.
  EXPECT_EQ(rules[0].expires, boot_now + seconds(30));
  EXPECT_FALSE(rules[1].expires.has_value());
  EXPECT_EQ(drop_expired(p, kNow), 1U);
  EXPECT_EQ(p.cidrs.size(), 2U);
}

TEST(DaemonPolicyModelTest, PolicyFileEntriesBecomePolicies) {
  policy::PolicySpec spec;
  spec.mode = datapath::Mode::kDenylist;
  spec.deny_cidrs = {prefix("203.0.113.0/24")};
  spec.allow_domains = {"mirror.example.org"};
  const Policy p = policy_from_spec(spec);
  EXPECT_EQ(p.mode, datapath::Mode::kDenylist);
  ASSERT_EQ(p.cidrs.size(), 1U);
  EXPECT_EQ(p.cidrs[0].action, Action::kDeny);
  EXPECT_EQ(p.domains.at(0).name, "mirror.example.org");
}

TEST(DaemonPolicyModelTest, RulesAPolicyFileEntryRepeatsAreHeldOnceInTheirOrder) {
  policy::PolicySpec spec;
  spec.allow_cidrs = {prefix("198.51.100.0/24"), prefix("203.0.113.0/24"),
                      prefix("198.51.100.0/24")};
  spec.deny_cidrs = {prefix("198.51.100.0/24")};
  spec.allow_domains = {"b.example", "a.example", "b.example"};
  spec.deny_domains = {"b.example", "b.example"};
  const Policy p = policy_from_spec(spec);
  const std::vector<CidrRule> cidrs = {{prefix("198.51.100.0/24"), Action::kAllow, std::nullopt},
                                       {prefix("203.0.113.0/24"), Action::kAllow, std::nullopt},
                                       {prefix("198.51.100.0/24"), Action::kDeny, std::nullopt}};
  EXPECT_EQ(p.cidrs, cidrs);
  const std::vector<DomainRule> domains = {
      {"b.example", Action::kAllow}, {"a.example", Action::kAllow}, {"b.example", Action::kDeny}};
  EXPECT_EQ(p.domains, domains);
}

Policy with_domains(size_t count) {
  Policy p;
  for (size_t i = 0; i < count; ++i) p.domains.push_back({"n" + std::to_string(i) + ".example"});
  return p;
}

TEST(DaemonPolicyModelTest, APolicyMayNotGrowPastTheDomainRuleCapButMayShrinkWhilePastIt) {
  EXPECT_TRUE(check_domain_rule_count(Policy{}, with_domains(3), 3).ok());
  const Status over = check_domain_rule_count(with_domains(3), with_domains(4), 3);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), Errc::kResourceExhausted);
  EXPECT_EQ(over.error().message(),
            "the policy would hold 4 domain rules, more than 3 (dns.max_domain_rules)");
  // Past the cap (it was lowered since): shedding or keeping is allowed,
  // so the rules can be brought back under it; gaining is not.
  EXPECT_TRUE(check_domain_rule_count(with_domains(6), with_domains(5), 3).ok());
  EXPECT_TRUE(check_domain_rule_count(with_domains(6), with_domains(6), 3).ok());
  EXPECT_FALSE(check_domain_rule_count(with_domains(6), with_domains(7), 3).ok());
}

Policy with_cidrs(size_t count) {
  Policy p;
  for (size_t i = 0; i < count; ++i) {
    p.cidrs.push_back({*net::IpPrefix::parse("198.51.100." + std::to_string(i) + "/32"),
                       Action::kAllow, std::nullopt});
  }
  return p;
}

// The CIDR cap is held as the domain cap is, and is off at 0.
TEST(DaemonPolicyModelTest, APolicyMayNotGrowPastTheCidrRuleCapWhenOneIsSet) {
  EXPECT_TRUE(check_cidr_rule_count(Policy{}, with_cidrs(3), 3).ok());
  const Status over = check_cidr_rule_count(with_cidrs(3), with_cidrs(4), 3);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), Errc::kResourceExhausted);
  EXPECT_EQ(over.error().message(),
            "the policy would hold 4 CIDR rules, more than 3 "
            "(datapath.max_cidr_rules_per_attachment)");
  EXPECT_TRUE(check_cidr_rule_count(with_cidrs(6), with_cidrs(5), 3).ok());
  EXPECT_TRUE(check_cidr_rule_count(with_cidrs(6), with_cidrs(6), 3).ok());
  EXPECT_FALSE(check_cidr_rule_count(with_cidrs(6), with_cidrs(7), 3).ok());
  EXPECT_TRUE(check_cidr_rule_count(Policy{}, with_cidrs(200), 0).ok()) << "0: no cap";
}

AttachmentRecord sample_record() {
  AttachmentRecord r;
  r.number = 3;
  r.kind = datapath::TargetKind::kInterface;
  r.target = "tap-vm7";
  r.metadata = {{"vm", "7"}, {"tenant", "t1"}};
  r.dns.v4 = *net::IpAddress::parse("198.51.100.1");
  r.dns.port = 20001;
  r.created = kNow;
  r.applied_policy = "agent";
  r.key = {datapath::TargetKind::kInterface, 42};
  r.serial = 9;
  r.policy.mode = datapath::Mode::kBlockAll;
  upsert_cidr(r.policy, {prefix("2001:db8::/32"), Action::kAllow, kNow + seconds(90)});
  upsert_domain(r.policy, {"example.org", Action::kDeny});
  return r;
}

// What decides whether learned hosts are judged again after a change.
TEST(DaemonPolicyModelTest, OnlyAChangeThatCanRefuseANameMayRefuseMore) {
  using datapath::Mode;
  Policy before;
  before.domains = {{"example.org", Action::kAllow}, {"ads.example.org", Action::kDeny}};
  const auto changed = [&](auto edit) {
    Policy after = before;
    edit(after);
    return may_refuse_more_names(before, after);
  };
  EXPECT_FALSE(changed([](Policy&) {}));
  EXPECT_FALSE(changed([](Policy& p) { p.domains.push_back({"example.net", Action::kAllow}); }));
  EXPECT_FALSE(changed([](Policy& p) { p.domains.pop_back(); })) << "a deny removed";
  EXPECT_FALSE(changed([](Policy& p) { p.cidrs.push_back({}); })) << "not a name rule";
  EXPECT_FALSE(changed([](Policy& p) { p.mode = Mode::kBlockAll; })) << "the filter mode";
  EXPECT_FALSE(changed([](Policy& p) { p.dns_mode = Mode::kDisabled; }));
  EXPECT_FALSE(changed([](Policy& p) { std::swap(p.domains[0], p.domains[1]); })) << "order";
  EXPECT_TRUE(changed([](Policy& p) { p.domains.erase(p.domains.begin()); })) << "an allow gone";
  EXPECT_TRUE(changed([](Policy& p) { p.domains.push_back({"cdn.example", Action::kDeny}); }));
  EXPECT_TRUE(changed([](Policy& p) { p.domains[0].action = Action::kDeny; }));
  EXPECT_TRUE(changed([](Policy& p) { p.dns_mode = Mode::kDenylist; }));
  EXPECT_TRUE(changed([](Policy& p) { p.dns_mode = Mode::kBlockAll; }));
  Policy disabled = before;
  disabled.dns_mode = Mode::kDisabled;
  EXPECT_TRUE(may_refuse_more_names(disabled, before)) << "DNS filtering turned on";
}

TEST(DaemonStateCodecTest, WhatIsWrittenIsReadBack) {
  DaemonStateData state;
  state.next_number = 4;
  state.records.push_back(sample_record());
  auto back = decode_state(encode_state(state));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->next_number, 4U);
  ASSERT_EQ(back->records.size(), 1U);
  const AttachmentRecord& r = back->records[0];
  const AttachmentRecord expected = sample_record();
  EXPECT_EQ(r.id(), "att-3");
  EXPECT_EQ(r.kind, expected.kind);
  EXPECT_EQ(r.target, expected.target);
  EXPECT_EQ(r.metadata, expected.metadata);
  EXPECT_EQ(r.dns, expected.dns);
  EXPECT_EQ(r.created, expected.created);
  EXPECT_EQ(r.applied_policy, "agent");
  EXPECT_EQ(r.key, expected.key);
  EXPECT_EQ(r.serial, 9U);
  EXPECT_EQ(r.policy, expected.policy);
}

TEST(DaemonStateCodecTest, WhyTheDaemonEndedAttachmentsIsKeptForTheNewestOnly) {
  DaemonStateData state;
  state.next_number = 2000;
  AttachmentRecord gone = sample_record();
  for (uint64_t n = 1; n <= DaemonStateData::kMaxEnded + 10; ++n) {
    gone.number = n;
    state.note_ended(gone, "reason " + std::to_string(n));
  }
  gone.number = 7;  // noted again: the newest entry is the one told
  gone.target = "tap-vm8";
  state.note_ended(gone, "interface deleted");
  ASSERT_EQ(state.ended.size(), DaemonStateData::kMaxEnded);
  EXPECT_EQ(state.find_ended(11), nullptr) << "the oldest are forgotten";
  ASSERT_NE(state.find_ended(12), nullptr);
  EXPECT_EQ(state.find_ended(12)->reason, "reason 12");
  EXPECT_EQ(state.find_ended(7)->target, "tap-vm8") << "the newest entry for a number";

  auto back = decode_state(encode_state(state));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->ended, state.ended);

  // A file holding more than this build keeps (a later build's bound):
  // the newest are read.
  state.ended.push_back({4000, "/sys/fs/cgroup/job", "cgroup removed"});
  back = decode_state(encode_state(state));
  ASSERT_TRUE(back.ok()) << back.error().message();
  ASSERT_EQ(back->ended.size(), DaemonStateData::kMaxEnded);
  EXPECT_EQ(back->ended.back().number, 4000U);
  EXPECT_EQ(back->find_ended(12), nullptr);
}

TEST(DaemonStateCodecTest, ContentThatCannotBeRightIsRefused) {
  EXPECT_EQ(decode_state("\xff\xff\xff").error().code(), Errc::kFailedPrecondition);
  DaemonStateData state;
  state.next_number = 2;  // but the record is att-3
  state.records.push_back(sample_record());
  auto bad = decode_state(encode_state(state));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("above next_id"), std::string::npos);
}

net::IpAddress address(const char* text) { return *net::IpAddress::parse(text); }

TEST(DaemonLearnedHostsTest, AnExplicitDenyOrHostRuleIsNeverOverriddenByALearnedAddress) {
  Policy p;
  upsert_cidr(p, {prefix("198.51.100.0/24"), Action::kDeny, std::nullopt});
  upsert_cidr(p, {prefix("198.51.100.128/25"), Action::kAllow, std::nullopt});
  upsert_cidr(p, {prefix("198.51.100.200/32"), Action::kAllow, std::nullopt});
  upsert_cidr(p, {prefix("198.51.100.64/26"), Action::kAllow, kNow - seconds(1)});  // expired
  upsert_cidr(p, {prefix("203.0.113.0/24"), Action::kDeny, kNow - seconds(1)});     // expired
  upsert_cidr(p, {prefix("2001:db8:1::/48"), Action::kDeny, kNow + seconds(60)});
  const NeverLearnRanges none;
  const LearnableIndex index(p, none);
  EXPECT_FALSE(index.learnable(address("198.51.100.7"), kNow)) << "under the deny /24";
  EXPECT_TRUE(index.learnable(address("198.51.100.130"), kNow)) << "a longer allow decides there";
  EXPECT_FALSE(index.learnable(address("198.51.100.200"), kNow)) << "the user's own host rule";
  EXPECT_FALSE(index.learnable(address("198.51.100.70"), kNow))
      << "an expired longer allow is no rule: the deny /24 decides";
  EXPECT_TRUE(index.learnable(address("203.0.113.5"), kNow)) << "an expired deny is no rule";
  EXPECT_TRUE(index.learnable(address("2001:db8::5"), kNow)) << "another family";
  EXPECT_FALSE(index.learnable(address("2001:db8:1::5"), kNow)) << "an IPv6 deny, until it expires";
  EXPECT_TRUE(index.learnable(address("2001:db8:1::5"), kNow + seconds(61)));

  upsert_cidr(p, {prefix("198.51.100.128/25"), Action::kDeny, std::nullopt});
  EXPECT_FALSE(LearnableIndex(p, none).learnable(address("198.51.100.130"), kNow))
      << "allow and deny: deny";
}

TEST(DaemonLearnedHostsTest, KernelRulesCarryAdmissibleLearnedHostsAndPruningDropsTheRest) {
  const auto boot = datapath::BootClock::time_point(seconds(1000));
  Policy p;
  upsert_cidr(p, {prefix("198.51.100.0/24"), Action::kDeny, std::nullopt});
  LearnedHosts learned = {{address("198.51.100.9"), {boot + seconds(60), {}}},
                          {address("203.0.113.9"), {boot + seconds(60), {}}},
                          {address("203.0.113.10"), {boot - seconds(1), {}}},
                          {address("2001:db8::9"), {boot + seconds(30), {}}}};
  const NeverLearnRanges none;
  const auto rules = kernel_rules(p, learned, none, kNow, boot);
  std::vector<std::string> learned_rules;
  for (const auto& r : rules) {
    if (r.learned) learned_rules.push_back(r.prefix.to_string());
  }
  std::sort(learned_rules.begin(), learned_rules.end());  // a rule set has no order
  EXPECT_EQ(learned_rules, (std::vector<std::string>{"2001:db8::9/128", "203.0.113.9/32"}));
  EXPECT_EQ(rules.size(), 3U) << "the deny, and two learned hosts";

  const auto dropped = prune_learned(learned, LearnableIndex(p, none), kNow, boot);
  EXPECT_EQ(dropped.size(), 2U) << "the denied one and the expired one";
  EXPECT_EQ(learned.size(), 2U);
}

// What an answer may name but never opens: the cloud's metadata service,
// the host, the internal network.
TEST(DaemonLearnedHostsTest, TheDefaultNeverLearnRangesHoldWhatDnsMustNotOpen) {
  const NeverLearnRanges never(default_never_learn());
  for (const char* text :
       {"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "10.1.2.3", "172.31.255.255",
        "192.168.0.1", "127.0.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.251", "255.255.255.255",
        "::", "::1", "fe80::1", "ff02::1",
        // The filter lets a NAT64 destination through as the IPv4 host it embeds.
        "64:ff9b::a9fe:a9fe", "64:ff9b::a01:203"}) {
    EXPECT_TRUE(never.covers(address(text))) << text;
  }
  for (const char* text : {"198.51.100.2", "203.0.113.9", "192.0.2.1", "172.32.0.1", "100.128.0.1",
                           "2001:db8::1", "64:ff9b::c633:6402", "64:ff9b:1::a9fe:a9fe"}) {
    EXPECT_FALSE(never.covers(address(text))) << text;
  }
  EXPECT_FALSE(NeverLearnRanges().covers(address("169.254.169.254"))) << "an empty list";
}

TEST(DaemonLearnedHostsTest, NeverLearnRangesHoldTheirEdgesAndNothingPast) {
  const std::vector<net::IpPrefix> ranges = {
      prefix("198.51.100.0/25"),   prefix("198.51.100.16/28"),  // nested
      prefix("198.51.100.128/32"), prefix("203.0.113.0/24"),    // adjacent, then apart
      prefix("2001:db8::/127"),    prefix("2001:db8:ffff::/48")};
  const NeverLearnRanges never(ranges);
  for (const char* text : {"198.51.100.0", "198.51.100.40", "198.51.100.127", "198.51.100.128",
                           "203.0.113.0", "203.0.113.255", "2001:db8::", "2001:db8::1",
                           "2001:db8:ffff::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    EXPECT_TRUE(never.covers(address(text))) << text;
  }
  for (const char* text :
       {"198.51.99.255", "198.51.100.129", "203.0.112.255", "203.0.114.0", "0.0.0.0",
        "255.255.255.255", "2001:db8::2", "2001:db9::", "::", "64:ff9b::c633:6481"}) {
    EXPECT_FALSE(never.covers(address(text))) << text;
  }
  EXPECT_TRUE(never.covers(address("64:ff9b::c633:6480"))) << "NAT64 for 198.51.100.128";

  const std::vector<net::IpPrefix> everything = {prefix("0.0.0.0/0"), prefix("::/0")};
  const NeverLearnRanges all(everything);
  for (const char* text :
       {"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    EXPECT_TRUE(all.covers(address(text))) << text;
  }
}

TEST(DaemonLearnedHostsTest, NeverLearnedAddressesAreNotLearnableWhateverTheRules) {
  Policy p;
  upsert_cidr(p, {prefix("10.0.0.0/8"), Action::kAllow, std::nullopt});
  upsert_cidr(p, {prefix("192.168.0.0/16"), Action::kDeny, std::nullopt});
  const std::vector<net::IpPrefix> ranges = {prefix("10.1.0.0/16"), prefix("192.168.1.0/24"),
                                             prefix("2001:db8:bad::/48")};
  const NeverLearnRanges never(ranges);
  const LearnableIndex index(p, never);
  using Verdict = LearnableIndex::Verdict;
  EXPECT_EQ(index.judge(address("10.1.2.3"), kNow), Verdict::kNeverLearned)
      << "an explicit allow around it does not make it learnable (it allows it itself)";
  EXPECT_EQ(index.judge(address("10.2.0.1"), kNow), Verdict::kLearnable);
  EXPECT_EQ(index.judge(address("192.168.1.1"), kNow), Verdict::kNeverLearned);
  EXPECT_EQ(index.judge(address("192.168.2.1"), kNow), Verdict::kUserRuleDecides);
  EXPECT_EQ(index.judge(address("2001:db8:bad::1"), kNow), Verdict::kNeverLearned);
  EXPECT_EQ(index.judge(address("2001:db8:bad:1::1"), kNow), Verdict::kNeverLearned);
  EXPECT_EQ(index.judge(address("2001:db8::1"), kNow), Verdict::kLearnable);

  // Held from before the range was listed (a restart with a new
  // configuration): not carried into the kernel, and pruned.
  const auto boot = datapath::BootClock::time_point(seconds(1000));
  LearnedHosts learned = {{address("10.1.2.3"), {boot + seconds(60), {}}},
                          {address("10.2.0.1"), {boot + seconds(60), {}}}};
  const auto rules = kernel_rules(p, learned, never, kNow, boot);
  EXPECT_EQ(std::count_if(rules.begin(), rules.end(), [](const auto& r) { return r.learned; }), 1);
  EXPECT_EQ(prune_learned(learned, index, kNow, boot),
            (std::vector<net::IpAddress>{address("10.1.2.3")}));
}

}  // namespace
}  // namespace sebpf::daemon
