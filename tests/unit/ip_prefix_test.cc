// Addresses and prefixes as users write them: canonical forms, and a clear
// rejection (quoting the input, saying the fix) for everything ambiguous.
#include "net/ip_prefix.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <vector>

namespace sebpf::net {
namespace {

IpAddress addr(std::string_view text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.ok()) << a.error().message();
  return a.ok() ? *a : IpAddress();
}

IpPrefix prefix(std::string_view text) {
  auto p = IpPrefix::parse(text);
  EXPECT_TRUE(p.ok()) << p.error().message();
  return p.ok() ? *p : IpPrefix();
}

// Asserts a kInvalidArgument error that quotes `input` and contains `fragment`.
template <typename T>
void expect_rejected(const Result<T>& r, std::string_view input, std::string_view fragment) {
  ASSERT_FALSE(r.ok()) << "accepted \"" << input << "\"";
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  const std::string& m = r.error().message();
  // Unprintable input is quoted escaped; RejectsUnprintableBytesAndQuotesThemEscaped checks those.
  if (std::all_of(input.begin(), input.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
    EXPECT_NE(m.find("\"" + std::string(input) + "\""), std::string::npos) << m;
  }
  EXPECT_NE(m.find(fragment), std::string::npos) << "\"" << fragment << "\" not in: " << m;
}

struct Canonical {
  const char* in;
  const char* out;
  Family family;
};

TEST(IpAddressTest, ParsesAndFormatsCanonically) {
  const Canonical cases[] = {
      {"192.0.2.1", "192.0.2.1", Family::kIPv4},
      {"0.0.0.0", "0.0.0.0", Family::kIPv4},
      {"255.255.255.255", "255.255.255.255", Family::kIPv4},
      {"198.51.100.0", "198.51.100.0", Family::kIPv4},
      {"203.0.113.10", "203.0.113.10", Family::kIPv4},
      {"2001:DB8:0:0::1", "2001:db8::1", Family::kIPv6},
      {"2001:db8:0:0:0:0:0:1", "2001:db8::1", Family::kIPv6},
      {"2001:0db8::0001", "2001:db8::1", Family::kIPv6},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", Family::kIPv6},     // first longest run
      {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", Family::kIPv6},  // one 0 stays
      {"::", "::", Family::kIPv6},
      {"::1", "::1", Family::kIPv6},
      {"fe80::1", "fe80::1", Family::kIPv6},
      {"::ffff:192.0.2.1", "::ffff:192.0.2.1", Family::kIPv6},
      {"::FFFF:c000:201", "::ffff:192.0.2.1", Family::kIPv6},
      // The longest accepted text (45 characters).
      {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       Family::kIPv6},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    auto a = IpAddress::parse(c.in);
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_EQ(a->to_string(), c.out);
    EXPECT_EQ(a->family(), c.family);
    EXPECT_EQ(a->max_prefix_length(), c.family == Family::kIPv4 ? 32 : 128);
    EXPECT_EQ(IpAddress::parse(a->to_string()).value(), *a);
  }
}

TEST(IpAddressTest, FactoriesAndAccessors) {
  const IpAddress a = IpAddress::v4(htonl(0xc0000201));
  EXPECT_EQ(a, addr("192.0.2.1"));
  EXPECT_EQ(a.v4_network_order(), htonl(0xc0000201));
  const std::array<uint8_t, 16> v4_bytes = {192, 0, 2, 1};
  EXPECT_EQ(a.bytes(), v4_bytes);

  const std::array<uint8_t, 16> v6_bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                            0,    0,    0,    0,    0, 0, 0, 1};
  EXPECT_EQ(IpAddress::v6(v6_bytes), addr("2001:db8::1"));
  EXPECT_EQ(addr("2001:db8::1").bytes(), v6_bytes);
  EXPECT_EQ(IpAddress::v6(v6_bytes).family(), Family::kIPv6);
}

TEST(IpAddressTest, RecognisesV4Mapped) {
  EXPECT_TRUE(addr("::ffff:192.0.2.1").is_v4_mapped());
  EXPECT_TRUE(addr("::ffff:0.0.0.0").is_v4_mapped());
  EXPECT_TRUE(addr("::ffff:255.255.255.255").is_v4_mapped());
  EXPECT_FALSE(addr("::1").is_v4_mapped());
  EXPECT_FALSE(addr("::192.0.2.1").is_v4_mapped());  // IPv4-compatible, not mapped
  EXPECT_FALSE(addr("::fffe:192.0.2.1").is_v4_mapped());
  EXPECT_FALSE(addr("64:ff9b::192.0.2.1").is_v4_mapped());  // NAT64
  EXPECT_FALSE(addr("1::ffff:192.0.2.1").is_v4_mapped());
  EXPECT_FALSE(addr("192.0.2.1").is_v4_mapped());  // IPv4 itself
}

struct Rejection {
  std::string in;
  const char* fragment;  // part of the expected message
};

TEST(IpAddressTest, RejectsWithAReason) {
  const Rejection cases[] = {
      {"", "empty"},
      {" 192.0.2.1", "whitespace"},
      {"192.0.2.1 ", "whitespace"},
      {"192.0. 2.1", "whitespace"},
      {"192.0.2.1\t", "whitespace"},
      {"192", "exactly 4 dot-separated parts, this has 1"},
      {"192.0.2", "exactly 4 dot-separated parts, this has 3"},
      {"192.0.2.1.5", "exactly 4 dot-separated parts, this has 5"},
      {"256.0.0.1", "0 to 255"},
      {"192.0..1", "0 to 255"},
      {"192.0.2.", "0 to 255"},
      {"010.0.0.1", "leading zero"},
      {"192.0.2.01", "leading zero"},
      {"00.0.0.0", "leading zero"},
      {"::ffff:192.0.2.01", "leading zero"},
      {"fe80::1%eth0", "zone ids"},
      {"fe80::1%1", "zone ids"},
      {"[2001:db8::1]", "remove the brackets"},
      {"2001:db8::1]", "remove the brackets"},
      {"192.0.2.0/24", "prefix length"},
      {"localhost", "it contains \"l\""},
      {"1.2.3.4x", "it contains \"x\""},
      {"0x7f.0.0.1", "it contains \"x\""},
      {"-1.0.0.0", "it contains \"-\""},
      {"+1.0.0.0", "it contains \"+\""},
      {"2001:db8::g", "it contains \"g\""},
      {"2001:db8:::1", "malformed IPv6"},
      {"2001:db8::1::2", "malformed IPv6"},
      {"1:2:3:4:5:6:7:8:9", "malformed IPv6"},
      {"12345::1", "malformed IPv6"},
      {":", "malformed IPv6"},
      {"::ffff:256.0.0.1", "malformed IPv6"},
      {"1111111111111111111111111111111111111111111111111", "too long"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    expect_rejected(IpAddress::parse(c.in), c.in, c.fragment);
  }
}

TEST(IpAddressTest, RejectsUnprintableBytesAndQuotesThemEscaped) {
  // inet_pton would stop at the NUL and accept "192.0.2.1".
  const std::string with_nul("192.0.2.1\0evil", 14);
  auto a = IpAddress::parse(with_nul);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(a.error().message().find("\"192.0.2.1\\x00evil\""), std::string::npos)
      << a.error().message();

  // A newline cannot forge a second log line; a non-breaking space is not a digit.
  for (const std::string bad : {"192.0.2.1\nfake log line", "192.0.2.1\xc2\xa0"}) {
    auto r = IpAddress::parse(bad);
    ASSERT_FALSE(r.ok());
    const std::string& m = r.error().message();
    EXPECT_TRUE(std::all_of(m.begin(), m.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) << m;
  }
  EXPECT_NE(IpAddress::parse("192.0.2.1\xc2\xa0").error().message().find("\\xc2\\xa0"),
            std::string::npos);
  EXPECT_NE(IpAddress::parse("1\"2").error().message().find(R"("1\"2")"), std::string::npos);
}

TEST(IpAddressTest, QuotesOnlyTheStartOfHugeInput) {
  const std::string huge(100000, '1');
  auto a = IpAddress::parse(huge);
  ASSERT_FALSE(a.ok());
  EXPECT_LT(a.error().message().size(), 200u);
  EXPECT_NE(a.error().message().find("111...\""), std::string::npos) << a.error().message();
}

struct PrefixCase {
  const char* in;
  const char* out;
  int length;
  bool host;
};

TEST(IpPrefixTest, ParsesPrefixesAndBareHosts) {
  const PrefixCase cases[] = {
      {"192.0.2.0/24", "192.0.2.0/24", 24, false},
      {"192.0.2.1", "192.0.2.1/32", 32, true},
      {"192.0.2.1/32", "192.0.2.1/32", 32, true},
      {"0.0.0.0/0", "0.0.0.0/0", 0, false},
      {"128.0.0.0/1", "128.0.0.0/1", 1, false},
      {"198.51.100.0/23", "198.51.100.0/23", 23, false},
      {"203.0.113.128/25", "203.0.113.128/25", 25, false},
      {"192.0.2.0/31", "192.0.2.0/31", 31, false},
      {"2001:db8::/32", "2001:db8::/32", 32, false},
      {"2001:DB8:0::/48", "2001:db8::/48", 48, false},
      {"2001:DB8::1", "2001:db8::1/128", 128, true},
      {"2001:db8::/127", "2001:db8::/127", 127, false},
      {"8000::/1", "8000::/1", 1, false},
      {"::/0", "::/0", 0, false},
      {"::/64", "::/64", 64, false},  // contains the mapped range: fine
      {"::/95", "::/95", 95, false},  // so does this
      {"::/96", "::/96", 96, false},  // IPv4-compatible, not mapped
      {"64:ff9b::/96", "64:ff9b::/96", 96, false},
      {"::fffe:0:0/96", "::fffe:0:0/96", 96, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    auto p = IpPrefix::parse(c.in);
    ASSERT_TRUE(p.ok()) << p.error().message();
    EXPECT_EQ(p->to_string(), c.out);
    EXPECT_EQ(p->length(), c.length);
    EXPECT_EQ(p->is_host(), c.host);
    EXPECT_EQ(p->family(), p->address().family());
    EXPECT_EQ(IpPrefix::parse(p->to_string()).value(), *p);
  }
}

TEST(IpPrefixTest, RejectsBadSyntaxWithAReason) {
  const Rejection cases[] = {
      {"", "empty"},
      {"/24", "address before \"/\" is missing"},
      {"/", "address before \"/\" is missing"},
      {"192.0.2.0/", "prefix length after \"/\" is missing"},
      {"192.0.2.0/24/1", "more than one \"/\""},
      {"192.0.2.0//24", "more than one \"/\""},
      {"192.0.2.0/+8", "plain decimal number"},
      {"192.0.2.0/-1", "plain decimal number"},
      {"192.0.2.0/2a", "plain decimal number"},
      {"192.0.2.0/0x18", "plain decimal number"},
      {"192.0.2.0/ 24", "plain decimal number"},
      {"192.0.2.0/24 ", "plain decimal number"},
      {std::string("192.0.2.0/24\0", 13), "plain decimal number"},
      {"192.0.2.0/08", "leading zero"},
      {"0.0.0.0/00", "leading zero"},
      {"192.0.2.0/33", "must be 0 to 32 for IPv4"},
      {"192.0.2.0/1000", "must be 0 to 32 for IPv4"},
      {"192.0.2.0/99999999999999999999", "must be 0 to 32 for IPv4"},
      {"2001:db8::/129", "must be 0 to 128 for IPv6"},
      {"2001:db8::/4294967424", "must be 0 to 128 for IPv6"},  // 2^32 + 128
      {"192.0.2.0 /24", "whitespace"},
      {" 192.0.2.0/24", "whitespace"},
      {"010.0.0.0/8", "leading zero"},
      {"300.0.0.0/8", "0 to 255"},
      {"192.0.2/24", "exactly 4"},
      {"fe80::%eth0/64", "zone ids"},
      {"[2001:db8::]/32", "remove the brackets"},
      {"example.com/24", "host names are not resolved"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    expect_rejected(IpPrefix::parse(c.in), c.in, c.fragment);
  }
}

struct Suggestion {
  const char* in;
  const char* fix;
};

TEST(IpPrefixTest, HostBitsAreRejectedWithTheCanonicalFormSuggested) {
  const Suggestion cases[] = {
      {"192.0.2.5/24", "did you mean \"192.0.2.0/24\"?"},
      {"198.51.100.1/31", "did you mean \"198.51.100.0/31\"?"},
      {"198.51.101.0/23", "did you mean \"198.51.100.0/23\"?"},
      {"203.0.113.255/25", "did you mean \"203.0.113.128/25\"?"},
      {"192.0.2.1/0", "did you mean \"0.0.0.0/0\"?"},
      {"2001:db8::1/32", "did you mean \"2001:db8::/32\"?"},
      {"2001:db8:8000::/32", "did you mean \"2001:db8::/32\"?"},
      {"2001:db8::1/127", "did you mean \"2001:db8::/127\"?"},
      {"::1/0", "did you mean \"::/0\"?"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    expect_rejected(IpPrefix::parse(c.in), c.in, c.fix);
  }
}

TEST(IpPrefixTest, V4MappedRulesAreRejectedWithTheIpv4FormSuggested) {
  const Suggestion cases[] = {
      {"::ffff:192.0.2.1/128", "use 192.0.2.1/32"},
      {"::ffff:192.0.2.1", "use 192.0.2.1/32"},
      {"::FFFF:c000:201", "use 192.0.2.1/32"},
      {"::ffff:192.0.2.0/120", "use 192.0.2.0/24"},
      {"::ffff:203.0.113.128/121", "use 203.0.113.128/25"},
      {"::ffff:0:0/96", "use 0.0.0.0/0"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    expect_rejected(IpPrefix::parse(c.in), c.in, c.fix);
    expect_rejected(IpPrefix::parse(c.in), c.in, "IPv4-mapped");
  }
}

struct Containment {
  const char* prefix;
  const char* address;
  bool contained;
};

TEST(IpPrefixTest, ContainsAtTheBoundaries) {
  const Containment cases[] = {
      {"0.0.0.0/0", "0.0.0.0", true},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "255.255.255.255", true},
      {"0.0.0.0/0", "2001:db8::1", false},  // other family
      {"0.0.0.0/0", "::ffff:192.0.2.1", false},
      {"128.0.0.0/1", "192.0.2.1", true},
      {"128.0.0.0/1", "128.0.0.0", true},
      {"128.0.0.0/1", "127.255.255.255", false},
      {"198.51.100.0/23", "198.51.101.255", true},
      {"198.51.100.0/23", "198.51.102.0", false},
      {"198.51.100.0/23", "198.51.99.255", false},
      {"203.0.113.0/25", "203.0.113.127", true},
      {"203.0.113.0/25", "203.0.113.128", false},
      {"192.0.2.0/31", "192.0.2.0", true},
      {"192.0.2.0/31", "192.0.2.1", true},
      {"192.0.2.0/31", "192.0.2.2", false},
      {"192.0.2.7/32", "192.0.2.7", true},
      {"192.0.2.7/32", "192.0.2.6", false},
      {"192.0.2.7/32", "192.0.2.8", false},
      {"::/0", "2001:db8::1", true},
      {"::/0", "::ffff:192.0.2.1", true},
      {"::/0", "192.0.2.1", false},  // other family
      {"8000::/1", "ffff::1", true},
      {"8000::/1", "7fff:ffff::", false},
      {"2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
      {"2001:db8::/32", "2001:db9::", false},
      {"2001:db8::/32", "2001:db7:ffff::", false},
      {"2001:db8::/127", "2001:db8::", true},
      {"2001:db8::/127", "2001:db8::1", true},
      {"2001:db8::/127", "2001:db8::2", false},
      {"2001:db8::5/128", "2001:db8::5", true},
      {"2001:db8::5/128", "2001:db8::4", false},
      {"2001:db8::5/128", "2001:db8::5:0", false},
      {"192.0.2.1/32", "::ffff:192.0.2.1", false},  // mapped is IPv6 here
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.prefix) + " contains " + c.address);
    EXPECT_EQ(prefix(c.prefix).contains(addr(c.address)), c.contained);
  }
}

struct MakeCase {
  const char* address;
  int length;
  const char* error;  // nullptr: accepted
};

TEST(IpPrefixTest, MakeValidatesLikeParse) {
  const MakeCase cases[] = {
      {"198.51.100.0", 24, nullptr},
      {"198.51.100.0", 22, nullptr},
      {"0.0.0.0", 0, nullptr},
      {"198.51.100.7", 32, nullptr},
      {"2001:db8::", 32, nullptr},
      {"2001:db8::1", 128, nullptr},
      {"::", 0, nullptr},
      {"198.51.100.0", 33,
       "\"198.51.100.0/33\" is not a valid CIDR prefix: the prefix length "
       "must be 0 to 32 for IPv4"},
      {"198.51.100.0", -1, "must be 0 to 32"},
      {"198.51.100.0", INT_MAX, "must be 0 to 32"},
      {"198.51.100.0", INT_MIN, "must be 0 to 32"},
      {"2001:db8::", 129, "must be 0 to 128"},
      {"198.51.100.1", 24,
       "\"198.51.100.1/24\" is not a valid CIDR prefix: host bits are set "
       "after the first 24 bits; did you mean \"198.51.100.0/24\"?"},
      {"198.51.100.0", 0, "did you mean \"0.0.0.0/0\"?"},
      {"2001:db8::1", 64, "did you mean \"2001:db8::/64\"?"},
      {"::ffff:192.0.2.1", 128, "use 192.0.2.1/32"},
      {"::ffff:0:0", 96, "use 0.0.0.0/0"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.address) + " length " + std::to_string(c.length));
    auto p = IpPrefix::make(addr(c.address), c.length);
    if (c.error == nullptr) {
      ASSERT_TRUE(p.ok()) << p.error().message();
      EXPECT_EQ(p->address(), addr(c.address));
      EXPECT_EQ(p->length(), c.length);
      EXPECT_EQ(*p, prefix(p->to_string()));
    } else {
      ASSERT_FALSE(p.ok());
      EXPECT_EQ(p.error().code(), Errc::kInvalidArgument);
      EXPECT_NE(p.error().message().find(c.error), std::string::npos) << p.error().message();
    }
  }
}

TEST(IpPrefixTest, ToStringAlwaysHasTheLength) {
  EXPECT_EQ(prefix("203.0.113.9").to_string(), "203.0.113.9/32");
  EXPECT_EQ(prefix("2001:db8::9").to_string(), "2001:db8::9/128");
  EXPECT_EQ(IpPrefix().to_string(), "0.0.0.0/0");
}

TEST(OrderingTest, AddressesSortByFamilyThenBytes) {
  EXPECT_LT(addr("255.255.255.255"), addr("::"));  // every IPv4 before every IPv6
  EXPECT_LT(addr("192.0.2.1"), addr("192.0.2.10"));
  EXPECT_LT(addr("192.0.2.255"), addr("198.51.100.0"));
  EXPECT_LT(addr("2001:db8::1"), addr("2001:db8::1:0"));
  EXPECT_EQ(addr("2001:DB8::1"), addr("2001:db8:0:0:0:0:0:1"));
  EXPECT_NE(addr("192.0.2.1"), addr("::ffff:192.0.2.1"));
  EXPECT_NE(addr("0.0.0.0"), addr("::"));  // same bytes, other family
}

TEST(OrderingTest, PrefixesSortByAddressThenLength) {
  std::vector<IpPrefix> v = {prefix("2001:db8::/32"), prefix("192.0.2.128/25"),
                             prefix("192.0.2.0/25"),  prefix("::/0"),
                             prefix("192.0.2.0/24"),  prefix("198.51.100.0/24")};
  std::sort(v.begin(), v.end());
  std::vector<std::string> sorted;
  for (const auto& p : v) sorted.push_back(p.to_string());
  const std::vector<std::string> expected = {"192.0.2.0/24",    "192.0.2.0/25", "192.0.2.128/25",
                                             "198.51.100.0/24", "::/0",         "2001:db8::/32"};
  EXPECT_EQ(sorted, expected);
  EXPECT_EQ(prefix("2001:DB8::/32"), prefix("2001:db8::/32"));
  EXPECT_NE(prefix("192.0.2.0/24"), prefix("192.0.2.0/25"));
  EXPECT_EQ(prefix("192.0.2.1"), prefix("192.0.2.1/32"));
}

}  // namespace
}  // namespace sebpf::net
