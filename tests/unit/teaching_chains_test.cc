// What taught each learned host: a host is taken back only when every
// chain that taught it is refused now.
#include "daemon/teaching_chains.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace sebpf::daemon {
namespace {

net::IpAddress ip(const char* text) { return *net::IpAddress::parse(text); }

std::string chain(std::vector<std::string_view> names) { return dns::encode_chain(names); }

// Refused: any chain with `name` in it.
auto naming(std::string_view name) {
  return [name](std::span<const std::string_view> names) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
}

TEST(TeachingChainsTest, AChainSurvivesEncodingWhateverItsNamesHold) {
  const std::string odd("a\0b c.example", 13);
  const std::vector<std::string_view> names{"www.example", odd, ""};
  EXPECT_EQ(dns::decode_chain(dns::encode_chain(names)), names);
  EXPECT_TRUE(dns::decode_chain("").empty());
  // A truncated chain (never made by encode_chain) is read without overrun.
  EXPECT_EQ(dns::decode_chain(std::string_view("\x09"
                                               "abc",
                                               4)),
            std::vector<std::string_view>{"abc"});
}

TEST(TeachingChainsTest, AHostIsRefusedOnlyWhenEveryChainThatTaughtItIs) {
  TeachingChains chains;
  chains.record(ip("192.0.2.1"), chain({"a.example"}));
  chains.record(ip("192.0.2.2"), chain({"b.example"}));
  chains.record(ip("192.0.2.2"), chain({"a.example"}));  // shared, like a CDN address
  chains.record(ip("192.0.2.3"), chain({"www.c.example", "a.example"}));
  chains.record(ip("192.0.2.1"), chain({"a.example"}));  // again: nothing new
  auto refused = chains.refused(naming("a.example"));
  std::sort(refused.begin(), refused.end());
  EXPECT_EQ(refused, (std::vector<net::IpAddress>{ip("192.0.2.1"), ip("192.0.2.3")}));
  EXPECT_TRUE(chains.refused(naming("nothing.example")).empty());
  EXPECT_EQ(chains.chains(), 3U);
}

TEST(TeachingChainsTest, AForgottenHostIsNeverRefused) {
  TeachingChains chains;
  chains.record(ip("2001:db8::1"), chain({"a.example"}));
  chains.forget(ip("2001:db8::1"));
  EXPECT_TRUE(chains.refused(naming("a.example")).empty());
  EXPECT_EQ(chains.hosts(), 0U);
}

TEST(TeachingChainsTest, AHostRemembersItsLatestChainsOnly) {
  TeachingChains chains;
  chains.record(ip("192.0.2.9"), chain({"first.example"}));
  for (size_t i = 0; i < TeachingChains::kMaxChainsPerHost; ++i) {
    chains.record(ip("192.0.2.9"), chain({"n" + std::to_string(i) + ".example"}));
  }
  // first.example fell out: refusing every other name refuses the host.
  const auto refused = chains.refused(
      [](std::span<const std::string_view> names) { return names.front() != "first.example"; });
  EXPECT_EQ(refused, std::vector<net::IpAddress>{ip("192.0.2.9")});
}

TEST(TeachingChainsTest, ChainsNoHostRemembersAreLetGo) {
  TeachingChains chains;
  for (int i = 0; i < 200; ++i) {
    chains.record(ip("192.0.2.1"), chain({"n" + std::to_string(i) + ".example"}));
  }
  chains.record(ip("192.0.2.2"), chain({"kept.example"}));
  chains.forget(ip("192.0.2.1"));
  chains.compact_if_sparse();
  EXPECT_EQ(chains.chains(), 1U);
  EXPECT_EQ(chains.refused(naming("kept.example")), std::vector<net::IpAddress>{ip("192.0.2.2")});
  chains.record(ip("192.0.2.3"), chain({"kept.example"}));
  EXPECT_EQ(chains.chains(), 1U) << "a chain recorded again after compaction is found";
}

}  // namespace
}  // namespace sebpf::daemon
