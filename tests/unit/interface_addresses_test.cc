#include "daemon/interface_addresses.h"

#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace sebpf::daemon {
namespace {

net::IpAddress ip(const char* text) { return *net::IpAddress::parse(text); }

// "ifindex address" per usable address.
std::vector<std::string> parsed(std::string_view text) {
  std::vector<std::string> out;
  for (const Ipv6Address& a : parse_if_inet6(text)) {
    out.push_back(std::to_string(a.ifindex) + " " + a.address.to_string());
  }
  return out;
}

TEST(InterfaceAddressesTest, OnlyGlobalIpv6AddressesThatPassedDadServeDns) {
  const std::string text =
      "20010db8000000000000000000000001 03 40 00 80     tap0\n"  // global, permanent
      "fe800000000000000000000000000001 03 40 20 80     tap0\n"  // link-local
      "20010db8000000000000000000000002 04 40 00 c0     tap1\n"  // tentative (DAD running)
      "20010db8000000000000000000000003 04 40 00 88     tap1\n"  // DAD failed
      "20010db8000000000000000000000004 04 40 00 a0     tap1\n"  // deprecated: still bound to
      "00000000000000000000000000000001 01 80 10 80       lo\n"  // host scope
      "20010db8000000000000000000000005 05 40 00 80\n"           // no name: not a line it knows
      "2001zdb8000000000000000000000006 05 40 00 80     tap2\n"  // not hex
      "20010db8000000000000000000000008 0g 40 00 80     tap4\n"  // index not hex
      "20010db8000000000000000000000007 1a 40 00 80     tap3";   // last line, no newline
  EXPECT_EQ(parsed(text), (std::vector<std::string>{
                              "3 2001:db8::1",
                              "4 2001:db8::4",
                              "26 2001:db8::7",
                          }));
  EXPECT_TRUE(parse_if_inet6("").empty());
}

// A cgroup's endpoint may bind ::1 in its workload's namespace once that
// namespace lists it (its loopback up, its IPv6 on); read from the file of
// one of its processes, without entering it.
TEST(InterfaceAddressesTest, ANamespaceHasAnAddressToBindOnlyWhenItListsItUsable) {
  const std::string file = ::testing::TempDir() + "/if_inet6." + std::to_string(getpid());
  const auto listing = [&](const std::string& text) {
    std::ofstream(file) << text;
    return namespace_has_ipv6_address(file, ip("::1"));
  };
  EXPECT_TRUE(listing("00000000000000000000000000000001 01 80 10 80       lo\n"))
      << "host scope binds";
  EXPECT_FALSE(listing("20010db8000000000000000000000001 03 40 00 80     eth0\n"))
      << "the loopback down, or its IPv6 off: not listed";
  EXPECT_FALSE(listing("00000000000000000000000000000001 01 80 10 c0       lo\n")) << "tentative";
  EXPECT_FALSE(listing(""));
  std::remove(file.c_str());
  EXPECT_FALSE(namespace_has_ipv6_address(file, ip("::1"))) << "its process gone";
  EXPECT_EQ(parsed("00000000000000000000000000000001 01 80 10 80       lo\n").size(), 0U)
      << "never an interface's endpoint address";
}

TEST(InterfaceAddressesTest, AnEndpointKeepsItsAddressWhileTheInterfaceHasIt) {
  const datapath::DnsEndpoint current{ip("198.51.100.1"), ip("2001:db8::1"), 20001};
  const std::vector<net::IpAddress> more = {ip("203.0.113.1"), ip("198.51.100.1"),
                                            ip("2001:db8::9"), ip("2001:db8::1")};
  EXPECT_EQ(endpoint_on(current, more), current) << "not moved to the interface's first";
}

TEST(InterfaceAddressesTest, AnEndpointTakesTheFirstAddressOfAFamilyWhenItHasNone) {
  const std::vector<net::IpAddress> now = {ip("203.0.113.1"), ip("198.51.100.1"),
                                           ip("2001:db8::9")};
  const datapath::DnsEndpoint none{std::nullopt, std::nullopt, 20001};
  EXPECT_EQ(endpoint_on(none, now),
            (datapath::DnsEndpoint{ip("203.0.113.1"), ip("2001:db8::9"), 20001}))
      << "an interface addressed after the attach";
  const datapath::DnsEndpoint gone{ip("192.0.2.1"), ip("2001:db8::1"), 20001};
  EXPECT_EQ(endpoint_on(gone, now),
            (datapath::DnsEndpoint{ip("203.0.113.1"), ip("2001:db8::9"), 20001}))
      << "readdressed";
  EXPECT_EQ(endpoint_on(gone, {}), none) << "no address left: none, the port kept";
  const std::vector<net::IpAddress> v4_only = {ip("198.51.100.1")};
  EXPECT_EQ(endpoint_on(gone, v4_only),
            (datapath::DnsEndpoint{ip("198.51.100.1"), std::nullopt, 20001}));
}

// Loopback is there for anyone to read, privileged or not.
TEST(InterfaceAddressesTest, OneLookGivesEveryAddressSortedAndEachInterfacesOwn) {
  const auto read = read_host_addresses();
  ASSERT_TRUE(read.ok()) << read.error().message();
  EXPECT_TRUE(std::is_sorted(read->all.begin(), read->all.end()));
  EXPECT_EQ(std::adjacent_find(read->all.begin(), read->all.end()), read->all.end());
  EXPECT_TRUE(std::binary_search(read->all.begin(), read->all.end(), ip("127.0.0.1")));
  const auto lo = read->by_interface.find(if_nametoindex("lo"));
  ASSERT_NE(lo, read->by_interface.end());
  EXPECT_EQ(lo->second.front(), ip("127.0.0.1"));
}

TEST(InterfaceAddressesTest, AnInterfaceOfNoBridgeServesItsOwnEndpoint) {
  const uint32_t lo = if_nametoindex("lo");
  EXPECT_EQ(dns_device_of(lo), lo);
  EXPECT_EQ(dns_device_of(0), 0U) << "no such interface";
}

}  // namespace
}  // namespace sebpf::daemon
