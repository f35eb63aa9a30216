// Addresses and prefixes as users write them: canonical forms, and a clear
// rejection (quoting the input, saying the fix) for everything ambiguous.
#include "net/ip_prefix.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace sebpf::net {
namespace {

TEST(IpAddressTest, ParsesAndFormatsCanonically) {
  const std::pair<const char*, const char*> cases[] = {
      {"192.0.2.1", "192.0.2.1"},
      {"0.0.0.0", "0.0.0.0"},
      {"255.255.255.255", "255.255.255.255"},
      {"2001:DB8:0:0::1", "2001:db8::1"},
      {"2001:db8:0:0:0:0:0:1", "2001:db8::1"},
      {"::", "::"},
      {"::1", "::1"},
      {"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
  };
  for (const auto& [in, out] : cases) {
    auto a = IpAddress::parse(in);
    ASSERT_TRUE(a.ok()) << in << ": " << a.error().message();
    EXPECT_EQ(a->to_string(), out);
  }
  EXPECT_EQ(IpAddress::parse("192.0.2.1")->family(), Family::kIPv4);
  EXPECT_EQ(IpAddress::parse("2001:db8::1")->family(), Family::kIPv6);
  EXPECT_EQ(IpAddress::parse("192.0.2.1")->v4_network_order(), htonl(0xc0000201));
  EXPECT_TRUE(IpAddress::parse("::ffff:192.0.2.1")->is_v4_mapped());
  EXPECT_FALSE(IpAddress::parse("2001:db8::1")->is_v4_mapped());
}

TEST(IpAddressTest, RejectsAmbiguousOrMalformedInput) {
  for (const char* bad :
       {"", " 192.0.2.1", "192.0.2.1 ", "192.0.2", "192.0.2.1.5", "256.0.0.1", "010.0.0.1",
        "192.0.2.01", "1.2.3.4x", "fe80::1%eth0", "[2001:db8::1]", "2001:db8:::1", "2001:db8::g",
        "localhost", "-1.0.0.0", "1111111111111111111111111111111111111111111111111"}) {
    auto a = IpAddress::parse(bad);
    ASSERT_FALSE(a.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(a.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(a.error().message().find("\"" + std::string(bad) + "\""), std::string::npos)
        << a.error().message();
  }
  EXPECT_NE(IpAddress::parse("010.0.0.1").error().message().find("leading zero"),
            std::string::npos);
  EXPECT_NE(IpAddress::parse("fe80::1%eth0").error().message().find("zone"), std::string::npos);
}

TEST(IpPrefixTest, ParsesPrefixesAndBareHosts) {
  const std::pair<const char*, const char*> cases[] = {
      {"192.0.2.0/24", "192.0.2.0/24"},
      {"192.0.2.1", "192.0.2.1/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"198.51.100.7/32", "198.51.100.7/32"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"2001:DB8::1", "2001:db8::1/128"},
      {"::/0", "::/0"},
      {"::/64", "::/64"},
  };
  for (const auto& [in, out] : cases) {
    auto p = IpPrefix::parse(in);
    ASSERT_TRUE(p.ok()) << in << ": " << p.error().message();
    EXPECT_EQ(p->to_string(), out);
  }
  EXPECT_TRUE(IpPrefix::parse("192.0.2.1")->is_host());
  EXPECT_FALSE(IpPrefix::parse("192.0.2.0/31")->is_host());
  EXPECT_TRUE(IpPrefix::parse("2001:db8::1/128")->is_host());
}

TEST(IpPrefixTest, RejectsBadLengths) {
  for (const char* bad : {"192.0.2.0/", "/24", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/-1",
                          "192.0.2.0/+8", "192.0.2.0/08", "192.0.2.0/24/1", "192.0.2.0/2a",
                          "192.0.2.0/99999999999999999999", "192.0.2.0 /24"}) {
    auto p = IpPrefix::parse(bad);
    ASSERT_FALSE(p.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(p.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(p.error().message().find("\"" + std::string(bad) + "\""), std::string::npos)
        << p.error().message();
  }
}

TEST(IpPrefixTest, HostBitsAreRejectedWithTheCanonicalFormSuggested) {
  auto p = IpPrefix::parse("192.0.2.5/24");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("\"192.0.2.5/24\""), std::string::npos);
  EXPECT_NE(p.error().message().find("did you mean \"192.0.2.0/24\"?"), std::string::npos)
      << p.error().message();
  auto p6 = IpPrefix::parse("2001:db8::1/32");
  ASSERT_FALSE(p6.ok());
  EXPECT_NE(p6.error().message().find("\"2001:db8::/32\""), std::string::npos);
  EXPECT_FALSE(IpPrefix::parse("0.0.0.1/0").ok());
}

TEST(IpPrefixTest, V4MappedRulesAreRejectedWithTheIpv4FormSuggested) {
  auto p = IpPrefix::parse("::ffff:192.0.2.1/128");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("use 192.0.2.1/32"), std::string::npos) << p.error().message();
  auto q = IpPrefix::parse("::ffff:192.0.2.0/120");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.error().message().find("use 192.0.2.0/24"), std::string::npos);
  EXPECT_TRUE(IpPrefix::parse("::/0").ok());  // contains the mapped range: fine
  EXPECT_TRUE(IpPrefix::parse("::/64").ok());
}

TEST(IpPrefixTest, ContainsAtTheBoundaries) {
  auto a = [](const char* t) { return *IpAddress::parse(t); };
  auto p = [](const char* t) { return *IpPrefix::parse(t); };
  EXPECT_TRUE(p("0.0.0.0/0").contains(a("203.0.113.9")));
  EXPECT_FALSE(p("0.0.0.0/0").contains(a("2001:db8::1")));  // other family
  EXPECT_TRUE(p("128.0.0.0/1").contains(a("192.0.2.1")));
  EXPECT_FALSE(p("128.0.0.0/1").contains(a("127.0.0.1")));
  EXPECT_TRUE(p("192.0.2.0/31").contains(a("192.0.2.1")));
  EXPECT_FALSE(p("192.0.2.0/31").contains(a("192.0.2.2")));
  EXPECT_TRUE(p("192.0.2.7/32").contains(a("192.0.2.7")));
  EXPECT_FALSE(p("192.0.2.7/32").contains(a("192.0.2.6")));
  EXPECT_TRUE(p("2001:db8::/127").contains(a("2001:db8::1")));
  EXPECT_FALSE(p("2001:db8::/127").contains(a("2001:db8::2")));
  EXPECT_TRUE(p("2001:db8::5/128").contains(a("2001:db8::5")));
  EXPECT_FALSE(p("::/0").contains(a("192.0.2.1")));
}

TEST(IpPrefixTest, MakeValidatesLikeParse) {
  const auto addr = *IpAddress::parse("198.51.100.0");
  EXPECT_TRUE(IpPrefix::make(addr, 24).ok());
  EXPECT_FALSE(IpPrefix::make(addr, 33).ok());
  EXPECT_FALSE(IpPrefix::make(addr, -1).ok());
  EXPECT_FALSE(IpPrefix::make(*IpAddress::parse("198.51.100.1"), 24).ok());
}

TEST(IpPrefixTest, OrderingIsFamilyThenAddressThenLength) {
  auto p = [](const char* t) { return *IpPrefix::parse(t); };
  EXPECT_LT(p("192.0.2.0/24"), p("2001:db8::/32"));
  EXPECT_LT(p("192.0.2.0/24"), p("192.0.2.0/25"));
  EXPECT_LT(p("192.0.2.0/24"), p("198.51.100.0/24"));
  EXPECT_EQ(p("2001:DB8::/32"), p("2001:db8::/32"));
}

}  // namespace
}  // namespace sebpf::net
