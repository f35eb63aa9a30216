// What taught each learned host: a host is taken back only when every
// chain that taught it is refused now.
#include "daemon/teaching_chains.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "daemon/teaching_chains_file.h"
#include "superebpf/state/v1/state.pb.h"

namespace sebpf::daemon {
namespace {

net::IpAddress ip(const char* text) { return *net::IpAddress::parse(text); }

std::string chain(std::vector<std::string_view> names) { return dns::encode_chain(names); }

// What learn() does for each host an answer taught.
void teach(TeachingChains& chains, LearnedHost& host, std::string_view chain) {
  host.taught(chains.add(chain));
}

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
  LearnedHosts hosts;
  teach(chains, hosts[ip("192.0.2.1")], chain({"a.example"}));
  teach(chains, hosts[ip("192.0.2.2")], chain({"b.example"}));
  teach(chains, hosts[ip("192.0.2.2")], chain({"a.example"}));  // shared, like a CDN address
  teach(chains, hosts[ip("192.0.2.3")], chain({"www.c.example", "a.example"}));
  teach(chains, hosts[ip("192.0.2.1")], chain({"a.example"}));  // again: nothing new
  auto refused = chains.refused(hosts, naming("a.example"));
  std::sort(refused.begin(), refused.end());
  EXPECT_EQ(refused, (std::vector<net::IpAddress>{ip("192.0.2.1"), ip("192.0.2.3")}));
  EXPECT_TRUE(chains.refused(hosts, naming("nothing.example")).empty());
  EXPECT_EQ(chains.chains(), 3U);
  EXPECT_EQ(hosts[ip("192.0.2.1")].taught_by.size(), 1U);
}

TEST(TeachingChainsTest, AHostNothingTaughtIsNeverRefused) {
  TeachingChains chains;
  LearnedHosts hosts;
  teach(chains, hosts[ip("2001:db8::1")], chain({"a.example"}));
  hosts[ip("2001:db8::2")];  // read back from the kernel with no record
  EXPECT_EQ(chains.refused(hosts, naming("a.example")), std::vector{ip("2001:db8::1")});
}

TEST(TeachingChainsTest, AHostRemembersItsLatestChainsOnly) {
  TeachingChains chains;
  LearnedHosts hosts;
  teach(chains, hosts[ip("192.0.2.9")], chain({"first.example"}));
  for (size_t i = 0; i < LearnedHost::kMaxTeachers; ++i) {
    teach(chains, hosts[ip("192.0.2.9")], chain({"n" + std::to_string(i) + ".example"}));
  }
  EXPECT_EQ(hosts[ip("192.0.2.9")].taught_by.size(), LearnedHost::kMaxTeachers);
  // first.example fell out: refusing every other name refuses the host.
  const auto refused = chains.refused(hosts, [](std::span<const std::string_view> names) {
    return names.front() != "first.example";
  });
  EXPECT_EQ(refused, std::vector<net::IpAddress>{ip("192.0.2.9")});
}

TEST(TeachingChainsTest, ChainsNoHostRemembersAreLetGo) {
  TeachingChains chains;
  LearnedHosts hosts;
  for (int i = 0; i < 200; ++i) {
    teach(chains, hosts[ip("192.0.2.1")], chain({"n" + std::to_string(i) + ".example"}));
  }
  teach(chains, hosts[ip("192.0.2.2")], chain({"kept.example"}));
  hosts.erase(ip("192.0.2.1"));  // expired
  chains.compact_if_sparse(hosts);
  EXPECT_EQ(chains.chains(), 1U);
  EXPECT_EQ(chains.refused(hosts, naming("kept.example")),
            std::vector<net::IpAddress>{ip("192.0.2.2")});
  teach(chains, hosts[ip("192.0.2.3")], chain({"kept.example"}));
  EXPECT_EQ(chains.chains(), 1U) << "a chain recorded again after compaction is found";
}

// What the daemon's budget for chains (make_chain_room_locked) counts: the
// texts kept, which a chain already known does not add to, and which a
// compaction brings down to the chains hosts still name, even when they
// are not most of what is kept.
TEST(TeachingChainsTest, TheTextKeptIsCountedAndCompactionLetsGoOfChainsNoHostNames) {
  TeachingChains chains;
  LearnedHosts hosts;
  const std::string a = chain({"a.example", "cdn.example"});
  EXPECT_FALSE(chains.knows(a));
  teach(chains, hosts[ip("192.0.2.1")], a);
  EXPECT_TRUE(chains.knows(a));
  EXPECT_EQ(chains.text_bytes(), a.size());
  teach(chains, hosts[ip("192.0.2.2")], a);
  EXPECT_EQ(chains.text_bytes(), a.size()) << "a known chain is kept once";

  // A host remembers its latest chains only: the first falls out.
  const std::string b = chain({"b.example"});
  teach(chains, hosts[ip("192.0.2.3")], b);
  for (size_t i = 0; i < LearnedHost::kMaxTeachers; ++i) {
    teach(chains, hosts[ip("192.0.2.3")], chain({"n" + std::to_string(i) + ".example"}));
  }
  hosts.erase(ip("192.0.2.1"));
  chains.compact_if_sparse(hosts);
  EXPECT_TRUE(chains.knows(b)) << "not sparse: compact_if_sparse keeps all";
  chains.compact(hosts);
  EXPECT_FALSE(chains.knows(b));
  EXPECT_TRUE(chains.knows(a)) << "192.0.2.2 still names it";
  size_t named = a.size();
  for (size_t i = 0; i < LearnedHost::kMaxTeachers; ++i) {
    named += chain({"n" + std::to_string(i) + ".example"}).size();
  }
  EXPECT_EQ(chains.text_bytes(), named);
}

// What a daemon writes is what the next one reads: the same hosts, held
// until the same instant, judged refused by the same names. Hosts nothing
// taught, or not yet written to the kernel, are left out.
TEST(TeachingChainsFileTest, WhatIsWrittenIsReadBack) {
  TeachersByAttachment teachers;
  std::map<uint64_t, LearnedHosts> learned;
  const auto at = [](int64_t ns) {
    return datapath::BootClock::time_point(datapath::BootClock::duration(ns));
  };
  teach(teachers[3], learned[3][ip("192.0.2.1")], chain({"a.example"}));
  teach(teachers[3], learned[3][ip("192.0.2.1")], chain({"b.example", "cdn.example"}));
  teach(teachers[3], learned[3][ip("2001:db8::1")], chain({"b.example", "cdn.example"}));
  learned[3][ip("192.0.2.1")].until = at(86'400'000'000'001);
  learned[3][ip("2001:db8::1")].until = at(2);
  learned[3][ip("192.0.2.7")].until = at(3);                              // untaught
  teach(teachers[3], learned[3][ip("192.0.2.8")], chain({"a.example"}));  // not written
  teach(teachers[7], learned[7][ip("198.51.100.9")], chain({"c.example"}));
  learned[7][ip("198.51.100.9")].until = at(4);
  auto read = decode_learned_chains(encode_learned_chains(teachers, learned));
  ASSERT_TRUE(read.ok()) << read.error().message();
  ASSERT_EQ(read->size(), 2u);
  const SavedTeachers& third = (*read)[3];
  EXPECT_EQ(third.hosts.size(), 2u);
  EXPECT_EQ(third.chains.chains(), 2u);
  EXPECT_EQ(third.hosts.at(ip("192.0.2.1")).taught_by.size(), 2u);
  EXPECT_EQ(third.hosts.at(ip("192.0.2.1")).until, at(86'400'000'000'001)) << "to the nanosecond";
  EXPECT_EQ(third.hosts.at(ip("2001:db8::1")).until, at(2));
  EXPECT_EQ(third.chains.refused(third.hosts, naming("cdn.example")),
            std::vector{ip("2001:db8::1")});
  auto both =
      third.chains.refused(third.hosts, [](std::span<const std::string_view>) { return true; });
  std::sort(both.begin(), both.end());
  EXPECT_EQ(both, (std::vector{ip("192.0.2.1"), ip("2001:db8::1")}));
  EXPECT_EQ((*read)[7].chains.refused((*read)[7].hosts, naming("c.example")),
            std::vector{ip("198.51.100.9")});
  EXPECT_TRUE(decode_learned_chains(encode_learned_chains({}, {})).value().empty());
}

TEST(TeachingChainsFileTest, ContentThatCannotBeRightIsRefused) {
  namespace state_v1 = ::superebpf::state::v1;
  const auto refused = [](const state_v1::LearnedChains& file) {
    auto read = decode_learned_chains(file.SerializeAsString());
    return read.ok() ? std::string("read")
                     : (read.error().code() == Errc::kFailedPrecondition ? read.error().message()
                                                                         : "wrong code");
  };
  EXPECT_NE(decode_learned_chains("\xff\xff garbage").error().message().find("not a LearnedChains"),
            std::string::npos);
  state_v1::LearnedChains file;
  file.set_format(1);  // an older build's, whose hosts have no expiry to check
  EXPECT_NE(refused(file).find("format 1 (this build reads 2)"), std::string::npos);
  file.set_format(3);
  EXPECT_NE(refused(file).find("format 3"), std::string::npos);
  file.set_format(2);
  auto* attachment = file.add_attachments();
  auto* chain = attachment->add_chains();
  chain->set_id(5);
  chain->set_names(dns::encode_chain(std::vector<std::string_view>{"a.example"}));
  auto* host = attachment->add_hosts();
  host->set_address(std::string("\xc0\x00\x02\x01", 4));
  host->add_chains(5);
  EXPECT_NE(refused(file).find("192.0.2.1 has no expiry"), std::string::npos);
  host->set_until_boot_ns(1);
  EXPECT_EQ(refused(file), "read");
  host->add_chains(6);
  EXPECT_NE(refused(file).find("chain 6"), std::string::npos);
  host->clear_chains();
  host->set_address("abc");
  EXPECT_NE(refused(file).find("3 bytes"), std::string::npos);
  host->set_address(std::string(16, '\0'));
  chain->set_names("");
  EXPECT_NE(refused(file).find("empty chain"), std::string::npos);
}

}  // namespace
}  // namespace sebpf::daemon
