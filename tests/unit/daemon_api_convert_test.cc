// The daemon's checks of API input: every bad field is refused with an
// error naming it; good input becomes the model exactly.
#include <gtest/gtest.h>

#include "daemon/api_convert.h"

namespace sebpf::daemon {
namespace {

const WallClock::time_point kNow = WallClock::time_point(std::chrono::seconds(1'800'000'000));

v1::CidrRule cidr(const std::string& text, v1::Action action, uint64_t ttl = 0) {
  v1::CidrRule rule;
  rule.set_cidr(text);
  rule.set_action(action);
  rule.set_ttl_seconds(ttl);
  return rule;
}

template <typename T>
void expect_field_error(const Result<T>& result, const std::string& prefix) {
  ASSERT_FALSE(result.ok()) << "expected an error starting with " << prefix;
  EXPECT_EQ(result.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(result.error().message().rfind(prefix, 0), 0U) << result.error().message();
}

TEST(DaemonApiConvertTest, AGoodPolicyBecomesTheModel) {
  v1::Policy in;
  in.set_mode(v1::MODE_ALLOWLIST);
  in.set_dns_mode(v1::MODE_DENYLIST);
  *in.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW, 60);
  *in.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_DENY);  // both sides: deny wins
  *in.add_cidrs() = cidr("2001:db8::1", v1::ACTION_ALLOW);
  auto* domain = in.add_domains();
  domain->set_domain("Mirror.Example.ORG.");
  domain->set_action(v1::ACTION_ALLOW);

  auto policy = policy_from_api(in, "policy", kNow);
  ASSERT_TRUE(policy.ok()) << policy.error().message();
  EXPECT_EQ(policy->mode, datapath::Mode::kAllowlist);
  EXPECT_EQ(policy->dns_mode, datapath::Mode::kDenylist);
  ASSERT_EQ(policy->cidrs.size(), 3U);
  EXPECT_EQ(policy->cidrs[0].expires, kNow + std::chrono::seconds(60));
  EXPECT_FALSE(policy->cidrs[1].expires.has_value());
  EXPECT_EQ(policy->cidrs[2].prefix.to_string(), "2001:db8::1/128");
  EXPECT_EQ(policy->domains.at(0).name, "mirror.example.org");

  // And back: what GetPolicy shows.
  v1::Policy out;
  policy_to_api(*policy, &out);
  EXPECT_EQ(out.cidrs(0).cidr(), "198.51.100.0/24");
  EXPECT_EQ(out.cidrs(0).expires_at().seconds(), 1'800'000'060);
  EXPECT_FALSE(out.cidrs(1).has_expires_at());
  EXPECT_EQ(out.domains(0).domain(), "mirror.example.org");
}

TEST(DaemonApiConvertTest, EveryBadPolicyFieldIsNamed) {
  v1::Policy base;
  base.set_mode(v1::MODE_ALLOWLIST);
  base.set_dns_mode(v1::MODE_ALLOWLIST);

  v1::Policy p = base;
  p.set_mode(v1::MODE_UNSPECIFIED);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.mode:");
  p = base;
  p.set_dns_mode(static_cast<v1::Mode>(99));
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.dns_mode:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW);
  *p.add_cidrs() = cidr("198.51.100.1/24", v1::ACTION_ALLOW);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.cidrs[1].cidr:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/33", v1::ACTION_ALLOW);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.cidrs[0].cidr:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_UNSPECIFIED);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.cidrs[0].action:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW, kMaxTtlSeconds + 1);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.cidrs[0].ttl_seconds:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW);
  p.mutable_cidrs(0)->mutable_expires_at()->set_seconds(5);
  expect_field_error(policy_from_api(p, "policy", kNow), "policy.cidrs[0].expires_at:");
  p = base;
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW);
  *p.add_cidrs() = cidr("198.51.100.0/24", v1::ACTION_ALLOW, 5);
  expect_field_error(policy_from_api(p, "policy", kNow),
                     "policy.cidrs[1]: repeats policy.cidrs[0]");
  for (const char* bad : {"", "bad..example", "*.example.org", "a b.example"}) {
    p = base;
    auto* d = p.add_domains();
    d->set_domain(bad);
    d->set_action(v1::ACTION_DENY);
    expect_field_error(policy_from_api(p, "policy", kNow), "policy.domains[0].domain:");
  }
  p = base;
  for (int i = 0; i < 2; ++i) {
    auto* d = p.add_domains();
    d->set_domain(i == 0 ? "example.org" : "EXAMPLE.org.");
    d->set_action(v1::ACTION_DENY);
  }
  expect_field_error(policy_from_api(p, "policy", kNow),
                     "policy.domains[1]: repeats policy.domains[0]");
}

// A name of 253 characters, the longest there is, told apart by `n`.
std::string longest_name(size_t n) {
  const std::string label(63, 'a');
  const std::string first = "n" + std::to_string(n) + "-";
  return first + std::string(61 - first.size(), 'a') + "." + label + "." + label + "." + label;
}

TEST(DaemonApiConvertTest, APolicyMustFitOneMessageAClientWithDefaultLimitsCanRead) {
  Policy fits;  // about 261 bytes a rule: 16,000 of them fit, and then a few
  for (size_t i = 0; i < 16000; ++i) fits.domains.push_back({longest_name(i), {}});
  while (true) {
    Policy more = fits;
    more.domains.push_back({longest_name(more.domains.size()), datapath::Action::kAllow});
    if (!check_policy_message_size(fits, more).ok()) break;
    fits = std::move(more);
  }
  ASSERT_EQ(fits.domains.back().name.size(), 253U);
  v1::Policy message;
  policy_to_api(fits, &message);
  EXPECT_LE(message.ByteSizeLong(), kMaxPolicyMessageBytes);
  EXPECT_GT(message.ByteSizeLong() + 261, kMaxPolicyMessageBytes) << "refused only past the bound";
  EXPECT_LT(fits.domains.size(), 16384U) << "so the default count cap alone would not do";

  Policy over = fits;
  over.domains.push_back({longest_name(over.domains.size()), datapath::Action::kAllow});
  const Status refused = check_policy_message_size(fits, over);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(refused.error().message().find(
                "more than 4193280 (what a client with gRPC's default 4 MiB limit can read back)"),
            std::string::npos)
      << refused.error().message();
  // A policy past the bound (kept from before it) may shed rules.
  Policy fewer = over;
  fewer.domains.front().name = "short.example";
  EXPECT_TRUE(check_policy_message_size(over, fewer).ok());
}

TEST(DaemonApiConvertTest, APolicyFileEntryPastTheBoundsIsNamed) {
  policy::PolicyFile file;
  file.policies.push_back({"small", {}, {}});
  file.policies[0].spec.allow_domains = {"a.example", "b.example", "a.example"};
  file.fallback = policy::PolicySpec{};
  file.fallback->deny_domains = {"a.example", "b.example", "c.example"};
  EXPECT_TRUE(check_policy_file_bounds(file, {3, 0}).ok()) << "a repeat counts once";
  Status over = check_policy_file_bounds(file, {2, 0});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(over.error().message(),
            "policy \"default\": the policy would hold 3 domain rules, more than 2 "
            "(dns.max_domain_rules), so no attach could use it");

  for (size_t i = 0; i < 16384; ++i) file.policies[0].spec.allow_domains.push_back(longest_name(i));
  over = check_policy_file_bounds(file, {1u << 20, 0});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().message().rfind("policy \"small\": the policy would take ", 0), 0U)
      << over.error().message();

  policy::PolicyFile wide;
  wide.policies.push_back({"wide", {}, {}});
  wide.policies[0].spec.allow_cidrs = {*net::IpPrefix::parse("198.51.100.0/24"),
                                       *net::IpPrefix::parse("2001:db8::/32")};
  wide.policies[0].spec.deny_cidrs = {*net::IpPrefix::parse("198.51.100.7/32")};
  EXPECT_TRUE(check_policy_file_bounds(wide, {16384, 3}).ok());
  EXPECT_TRUE(check_policy_file_bounds(wide, {16384, 0}).ok()) << "0: no cap";
  over = check_policy_file_bounds(wide, {16384, 2});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().message(),
            "policy \"wide\": the policy would hold 3 CIDR rules, more than 2 "
            "(datapath.max_cidr_rules_per_attachment), so no attach could use it");
}

TEST(DaemonApiConvertTest, UnspecifiedActionMeansBothOnlyWhereSaid) {
  auto both = action_from_api(v1::ACTION_UNSPECIFIED, "action", true);
  ASSERT_TRUE(both.ok());
  EXPECT_FALSE(both->has_value());
  expect_field_error(action_from_api(v1::ACTION_UNSPECIFIED, "action", false), "action:");
  expect_field_error(action_from_api(static_cast<v1::Action>(7), "action", true), "action:");
}

TEST(DaemonApiConvertTest, MetadataKeysAndValuesAreChecked) {
  google::protobuf::Map<std::string, std::string> m;
  m["vm"] = "7";
  m["k8s.io/pod-name"] = "web-1";
  m["note"] = "ünïcödé is fine";
  auto ok = metadata_from_api(m, "metadata");
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->at("vm"), "7");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "x"},
      {"has space", "x"},
      {std::string(64, 'k'), "x"},
      {"ctl", std::string("a\nb")},
      {"utf8", std::string("\xff\xfe")},
      {"long", std::string(1025, 'v')},
  };
  for (const auto& [key, value] : bad) {
    google::protobuf::Map<std::string, std::string> one;
    one[key] = value;
    expect_field_error(metadata_from_api(one, "metadata"), "metadata[");
  }
  google::protobuf::Map<std::string, std::string> many;
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  expect_field_error(metadata_from_api(many, "metadata"), "metadata:");
}

TEST(DaemonApiConvertTest, AttachmentIds) {
  EXPECT_EQ(attachment_id_to_api(12), "att-12");
  EXPECT_EQ(*attachment_id_from_api("att-12", "id"), 12U);
  for (const char* bad : {"", "att-", "att-0", "att-012", "att-1x", "12",
                          "att-99999999999999999999", "ATT-1", "at"}) {
    expect_field_error(attachment_id_from_api(bad, "id"), "id:");
  }
}

TEST(DaemonApiConvertTest, CountersAreTheNonZeroOnesWithTheirSums) {
  datapath::Counters kernel;
  kernel.count[SEBPF_HOOK_SOCKET][SEBPF_REASON_DENY_DEFAULT] = 3;
  kernel.count[SEBPF_HOOK_PACKET][SEBPF_REASON_ALLOW_RULE] = 40;
  kernel.count[SEBPF_HOOK_PACKET][SEBPF_REASON_ALLOW_KEPT_CONNECTION] = 2;  // the last allow
  kernel.count[SEBPF_HOOK_PACKET][SEBPF_REASON_DENY_RULE] = 5;              // the first deny
  v1::Counters api;
  counters_to_api(kernel, &api);
  ASSERT_EQ(api.counters_size(), 4);
  std::vector<std::string> seen;
  for (const v1::Counter& c : api.counters()) {
    seen.push_back(c.hook() + " " + c.reason() + " " + (c.allowed() ? "allowed " : "denied ") +
                   std::to_string(c.count()));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{
                      "packet allow_rule allowed 40", "packet allow_kept_connection allowed 2",
                      "packet deny_rule denied 5", "socket deny_default denied 3"}));
  EXPECT_EQ(api.allowed(), 42U);
  EXPECT_EQ(api.denied(), 8U);

  v1::DnsCounters dns;
  dns_counters_to_api({.queries = 1,
                       .refused = 2,
                       .forwarded = 3,
                       .answered = 4,
                       .servfail = 5,
                       .malformed = 6,
                       .rate_limited = 7,
                       .answer_addresses = 8,
                       .dropped_unread = 13},
                      {.not_learned = 9, .hosts = 10, .hosts_most = 11, .no_room = 12}, &dns);
  EXPECT_EQ(std::vector<uint64_t>({dns.queries(), dns.refused(), dns.forwarded(), dns.answered(),
                                   dns.servfail(), dns.malformed(), dns.rate_limited(),
                                   dns.answer_addresses(), dns.addresses_not_learned(),
                                   dns.learned_hosts(), dns.learned_hosts_most(),
                                   dns.servfail_no_room(), dns.dropped_unread()}),
            (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}));
}

}  // namespace
}  // namespace sebpf::daemon
