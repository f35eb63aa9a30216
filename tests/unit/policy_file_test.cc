// The local policy file and domain names: what parses, what is refused and
// how, and which policy an attachment's metadata selects.
#include "policy/policy_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/text_file.h"
#include "policy/domain_name.h"
#include "support/test_dir.h"

namespace sebpf::policy {
namespace {

using datapath::Mode;

TEST(DomainNameTest, NormalizesCaseAndTrailingDot) {
  EXPECT_EQ(*normalize_domain("Example.COM."), "example.com");
  EXPECT_EQ(*normalize_domain("mirror.example.org"), "mirror.example.org");
  EXPECT_EQ(*normalize_domain("_http._tcp.example.org"), "_http._tcp.example.org");
  EXPECT_EQ(*normalize_domain("localhost"), "localhost");
  EXPECT_EQ(*normalize_domain(std::string(63, 'a') + ".org"), std::string(63, 'a') + ".org");
}

TEST(DomainNameTest, RejectsWhatIsNotADomainName) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "empty"},
      {".", "empty"},
      {"a..b", "empty label"},
      {".example.com", "empty label"},
      {"*.example.com", "wildcards"},
      {"exa mple.com", "only letters"},
      {"ex\xc3\xa4mple.com", "write an internationalized name in its \"xn--\" form"},
      {"-example.com", "'-'"},
      {"example-.com", "'-'"},
      {std::string(64, 'a') + ".com", "63"},
      {std::string(250, 'a') + ".com", "253"},
      {"198.51.100.1", "CIDR"},
      {"2001:db8::1", "CIDR"},
  };
  for (const auto& [name, why] : cases) {
    auto r = normalize_domain(name);
    ASSERT_FALSE(r.ok()) << "accepted \"" << name << "\"";
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
  }
}

TEST(PolicyFileTest, FirstMatchingSelectorWinsThenTheDefault) {
  auto file = parse_policy_file(R"(
version: 1
policies:
  - name: agents
    match: {role: agent, tenant: t1}
    mode: allowlist
    allow_cidrs: [198.51.100.0/24, "2001:db8::/48"]
    deny_cidrs: [198.51.100.7]
    deny_domains: [Evil.Example.]
  - name: builders
    match: {role: builder}
    mode: denylist
default:
  mode: block_all
  dns_mode: disabled
)");
  ASSERT_TRUE(file.ok()) << file.error().message();
  const auto agent_selection = file->select({{"role", "agent"}, {"tenant", "t1"}, {"vm", "7"}});
  ASSERT_TRUE(agent_selection.has_value());
  EXPECT_EQ(agent_selection->name, "agents");
  const PolicySpec* agent = agent_selection->spec;
  EXPECT_EQ(agent->mode, Mode::kAllowlist);
  EXPECT_EQ(agent->allow_cidrs.size(), 2U);
  EXPECT_EQ(agent->deny_cidrs.front().to_string(), "198.51.100.7/32");
  EXPECT_EQ(agent->deny_domains.front(), "evil.example");
  EXPECT_EQ(file->select({{"role", "builder"}})->spec->mode, Mode::kDenylist);
  // A partial match is no match.
  const auto other_selection = file->select({{"role", "agent"}, {"tenant", "t2"}});
  ASSERT_TRUE(other_selection.has_value());
  EXPECT_EQ(other_selection->name, "default");
  const PolicySpec* other = other_selection->spec;
  EXPECT_EQ(other->mode, Mode::kBlockAll);
  EXPECT_EQ(other->dns_mode, Mode::kDisabled);
}

TEST(PolicyFileTest, NoMatchAndNoDefaultSelectsNothing) {
  auto file = parse_policy_file("version: 1\npolicies:\n  - name: a\n    match: {x: y}\n");
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_FALSE(file->select({}).has_value());
}

TEST(PolicyFileTest, MistakesAreErrorsNamingTheLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty"},
      {"policies: []\n", "version"},
      {"version: 2\n", "unsupported version"},
      {"version: 1\npolicy: []\n", "unknown key \"policy\""},
      {"version: 1\nversion: 1\n", "twice"},
      {"version: 1\npolicies:\n  - name: a\n    allow_cidr: [198.51.100.0/24]\n",
       "line 4: unknown key \"allow_cidr\""},
      {"version: 1\npolicies:\n  - mode: allowlist\n", "needs a name"},
      {"version: 1\npolicies:\n  - name: a\n  - name: a\n", "two policies are named"},
      {"version: 1\npolicies:\n  - name: a\n    mode: allow\n", "unknown mode"},
      {"version: 1\npolicies:\n  - name: a\n    allow_cidrs: [198.51.100.1/24]\n", "did you mean"},
      {"version: 1\npolicies:\n  - name: a\n    allow_cidrs: 198.51.100.0/24\n", "must be a list"},
      {"version: 1\npolicies:\n  - name: a\n    allow_domains: [\"*.example.com\"]\n", "wildcards"},
      {"version: 1\npolicies:\n  - name: a\n    match: [role]\n", "must be a mapping"},
      {"version: 1\npolicies: {name: a}\n", "must be a list"},
      {"version: 1\ndefault: {mode: block_all, name: x}\n", "unknown key \"name\""},
      {"version: 1\npolicies: [\n", "policy file"},
  };
  for (const auto& [yaml, why] : cases) {
    auto file = parse_policy_file(yaml);
    ASSERT_FALSE(file.ok()) << "accepted:\n" << yaml;
    EXPECT_EQ(file.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(file.error().message().find(why), std::string::npos)
        << "for:\n"
        << yaml << "got: " << file.error().message();
  }
}

TEST(PolicyFileTest, MissingFileIsNotFound) {
  auto file = load_policy_file("/nonexistent/policy.yaml");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), Errc::kNotFound);
}

// yaml-cpp stops at a depth of nesting (rather than exhaust its stack);
// the error says so, where yaml-cpp's says "bad file".
TEST(PolicyFileTest, NestingTooDeepIsRefusedSayingSo) {
  std::string text = "version: 1\npolicies: ";
  for (int i = 0; i < 10000; ++i) text += "[";
  auto file = parse_policy_file(text);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message().find("levels deep, deeper than any policy file needs"),
            std::string::npos)
      << file.error().message();
}

// What is not a regular file (a FIFO would wait for a writer; /dev/zero
// never ends), or is larger than any policy, is refused before it is read.
TEST(PolicyFileTest, WhatIsNotARegularFileOrTooLargeIsRefusedUnread) {
  const testing::TestDir test_dir("sebpf-policy-file");
  ASSERT_TRUE(test_dir.made());
  const std::string& dir = test_dir.path();
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string large = dir + "/large.yaml";
  {
    std::ofstream(large) << "version: 1\n";
    std::filesystem::resize_file(large, kMaxTextFileBytes + 1);  // sparse
  }
  for (const std::string& path : {fifo, std::string("/dev/zero"), dir}) {
    auto file = load_policy_file(path);
    ASSERT_FALSE(file.ok()) << path;
    EXPECT_EQ(file.error().message(), "policy file " + path + " is not a regular file");
  }
  auto file = load_policy_file(large);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().message(), "policy file " + large + " is larger than 64 MiB");
}

}  // namespace
}  // namespace sebpf::policy
