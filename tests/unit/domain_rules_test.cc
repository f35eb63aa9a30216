// Domain rule matching: a rule covers the name and its subdomains, the rule
// with the most labels wins, allow and deny on one name means deny.
#include "policy/domain_rules.h"

#include <gtest/gtest.h>

namespace sebpf::policy {
namespace {

using datapath::Action;

TEST(DomainRulesTest, ARuleCoversTheNameAndItsSubdomains) {
  DomainRules rules;
  ASSERT_TRUE(rules.add("example.com", Action::kAllow).ok());
  EXPECT_EQ(rules.match("example.com"), Action::kAllow);
  EXPECT_EQ(rules.match("www.example.com"), Action::kAllow);
  EXPECT_EQ(rules.match("a.b.c.example.com."), Action::kAllow);
  EXPECT_EQ(rules.match("WWW.Example.COM"), Action::kAllow);
  EXPECT_EQ(rules.match("notexample.com"), std::nullopt);  // not a subdomain
  EXPECT_EQ(rules.match("example.com.evil.org"), std::nullopt);
  EXPECT_EQ(rules.match("com"), std::nullopt);
}

TEST(DomainRulesTest, MostLabelsWin) {
  DomainRules rules;
  ASSERT_TRUE(rules.add("example.com", Action::kAllow).ok());
  ASSERT_TRUE(rules.add("secret.example.com", Action::kDeny).ok());
  ASSERT_TRUE(rules.add("ok.secret.example.com", Action::kAllow).ok());
  ASSERT_TRUE(rules.add("com", Action::kDeny).ok());
  EXPECT_EQ(rules.match("www.example.com"), Action::kAllow);
  EXPECT_EQ(rules.match("x.secret.example.com"), Action::kDeny);
  EXPECT_EQ(rules.match("a.ok.secret.example.com"), Action::kAllow);
  EXPECT_EQ(rules.match("other.com"), Action::kDeny);
}

TEST(DomainRulesTest, AllowAndDenyOnOneNameMeansDeny) {
  DomainRules rules;
  ASSERT_TRUE(rules.add("packages.example.net", Action::kAllow).ok());
  ASSERT_TRUE(rules.add("Packages.Example.NET.", Action::kDeny).ok());
  EXPECT_EQ(rules.match("files.packages.example.net"), Action::kDeny);
  EXPECT_EQ(rules.size(), 1U);
  ASSERT_TRUE(rules.remove("packages.example.net", Action::kDeny).ok());
  EXPECT_EQ(rules.match("files.packages.example.net"), Action::kAllow);
}

TEST(DomainRulesTest, BadNamesAndMissingRulesAreErrors) {
  DomainRules rules;
  EXPECT_EQ(rules.add("*.example.com", Action::kAllow).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(rules.add("bad..name", Action::kDeny).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(rules.remove("example.com", Action::kAllow).error().code(), Errc::kNotFound);
  ASSERT_TRUE(rules.add("example.com", Action::kAllow).ok());
  EXPECT_EQ(rules.remove("example.com", Action::kDeny).error().code(), Errc::kNotFound);
  EXPECT_EQ(rules.size(), 1U);
  // A query name is matched by its labels whatever they hold.
  EXPECT_EQ(rules.match("in valid.example.com"), Action::kAllow);
  EXPECT_EQ(rules.match("in valid.example.co"), std::nullopt);
}

}  // namespace
}  // namespace sebpf::policy
