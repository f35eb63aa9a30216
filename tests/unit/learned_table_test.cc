#include "datapath/learned_table.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <set>
#include <vector>

namespace sebpf::datapath {
namespace {

net::IpAddress ip(const char* text) { return *net::IpAddress::parse(text); }

// The n-th address of 2001:db8::/64, all distinct.
net::IpAddress nth(uint32_t n) {
  std::array<uint8_t, 16> bytes{0x20, 0x01, 0x0d, 0xb8};
  for (int i = 0; i < 4; ++i) bytes[12 + i] = static_cast<uint8_t>(n >> (24 - 8 * i));
  return net::IpAddress::v6(bytes);
}

class LearnedTableTest : public ::testing::Test {
 protected:
  explicit LearnedTableTest(size_t buckets = 64) : memory_(buckets), table_(memory_, 1000000) {}
  std::vector<sebpf_learned_bucket> memory_;
  LearnedTable table_;
};

TEST_F(LearnedTableTest, APutHostIsHeldUntilItsExpiryAndARefreshMovesIt) {
  EXPECT_FALSE(table_.get(7, ip("192.0.2.1")));
  ASSERT_TRUE(table_.put(7, ip("192.0.2.1"), 1000).ok());
  EXPECT_EQ(table_.get(7, ip("192.0.2.1")), 1000U);
  ASSERT_TRUE(table_.put(7, ip("192.0.2.1"), 5000).ok());
  EXPECT_EQ(table_.get(7, ip("192.0.2.1")), 5000U);
  EXPECT_EQ(table_.entries().size(), 1U) << "a refresh, not a second entry";
}

TEST_F(LearnedTableTest, RuleSetsAndFamiliesAreApart) {
  ASSERT_TRUE(table_.put(7, ip("203.0.113.1"), 1000).ok());
  EXPECT_FALSE(table_.get(8, ip("203.0.113.1"))) << "another attachment's rule set";
  // 203.0.113.1 is cb00:7101 in its first bytes: the same bytes as IPv6.
  EXPECT_FALSE(table_.get(7, ip("cb00:7101::"))) << "an IPv6 address with the same leading bytes";
  ASSERT_TRUE(table_.put(7, ip("cb00:7101::"), 2000).ok());
  EXPECT_EQ(table_.get(7, ip("203.0.113.1")), 1000U);
  EXPECT_EQ(table_.get(7, ip("cb00:7101::")), 2000U);
}

TEST_F(LearnedTableTest, EraseTakesOneHostAndEraseRulesetAllOfOneSet) {
  for (uint32_t n = 0; n < 50; ++n) {
    ASSERT_TRUE(table_.put(1, nth(n), 100 + n).ok());
    ASSERT_TRUE(table_.put(2, nth(n), 100 + n).ok());
  }
  EXPECT_TRUE(table_.erase(1, nth(3)));
  EXPECT_FALSE(table_.erase(1, nth(3))) << "gone already";
  EXPECT_FALSE(table_.get(1, nth(3)));
  EXPECT_EQ(table_.get(2, nth(3)), 103U);
  EXPECT_EQ(table_.erase_ruleset(1), 49U);
  EXPECT_TRUE(table_.entries(1).empty());
  EXPECT_EQ(table_.entries(2).size(), 50U);
  EXPECT_EQ(table_.entries().size(), 50U);
}

TEST_F(LearnedTableTest, EntriesGiveBackWhatWasPut) {
  ASSERT_TRUE(table_.put(3, ip("198.51.100.7"), 42).ok());
  ASSERT_TRUE(table_.put(3, ip("2001:db8::7"), 43).ok());
  std::set<std::string> seen;
  for (const LearnedTable::Entry& e : table_.entries(3)) {
    seen.insert(e.address.to_string() + "@" + std::to_string(e.until));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"198.51.100.7@42", "2001:db8::7@43"}));
}

// Every write of a slot is bracketed by an odd and an even seq, so the
// programs can tell a slot they read while it changed.
TEST_F(LearnedTableTest, EveryRewriteOfASlotMovesItsSequenceByTwo) {
  ASSERT_TRUE(table_.put(1, nth(1), 10).ok());
  const sebpf_learned_slot* slot = nullptr;
  for (const auto& bucket : memory_) {
    for (const auto& s : bucket.slot) {
      if (s.ruleset == 1) slot = &s;
    }
  }
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(slot->seq, 2U);
  ASSERT_TRUE(table_.erase(1, nth(1)));
  EXPECT_EQ(slot->seq, 4U);
  EXPECT_EQ(slot->ruleset, 0U) << "an empty slot";
}

// The sizing rule: buckets for twice the hosts. Filled to that load (half
// its slots), no put finds both its buckets full.
TEST(LearnedTableLoadTest, HalfFullNoPutFails) {
  std::vector<sebpf_learned_bucket> memory(4096);
  LearnedTable table(memory, 1000000);
  const uint32_t hosts = 4096 * SEBPF_LEARNED_WAYS / 2;
  for (uint32_t n = 0; n < hosts; ++n) {
    ASSERT_TRUE(table.put(1 + n % 3, nth(n), 1).ok()) << "host " << n;
  }
  EXPECT_EQ(table.entries().size(), hosts);
}

// As the host maps: at most max_hosts per family, counted again over a
// table that already holds hosts (pinned state).
TEST(LearnedTableLimitTest, AtMostMaxHostsPerFamilyCountedAfterARestartToo) {
  std::vector<sebpf_learned_bucket> memory(64);
  {
    LearnedTable table(memory, 2);
    ASSERT_TRUE(table.put(1, ip("192.0.2.1"), 1).ok());
    ASSERT_TRUE(table.put(2, ip("192.0.2.2"), 1).ok());
    const Status full = table.put(1, ip("192.0.2.3"), 1);
    EXPECT_EQ(full.error().code(), Errc::kResourceExhausted);
    EXPECT_NE(full.error().message().find("raise max_host_rules"), std::string::npos);
    EXPECT_TRUE(table.put(1, ip("192.0.2.1"), 5).ok()) << "a refresh takes no room";
    EXPECT_TRUE(table.put(1, ip("2001:db8::1"), 1).ok()) << "IPv6 has room of its own";
  }
  LearnedTable again(memory, 2);
  EXPECT_FALSE(again.put(1, ip("192.0.2.3"), 1).ok()) << "the hosts already there count";
  ASSERT_TRUE(again.erase(2, ip("192.0.2.2")));
  EXPECT_TRUE(again.put(1, ip("192.0.2.3"), 1).ok()) << "an erased host frees its room";
}

class SmallLearnedTableTest : public LearnedTableTest {
 protected:
  SmallLearnedTableTest() : LearnedTableTest(2) {}
};

// Two buckets: a host may sit in either, so every slot of both fills
// before a put fails, and the failure says what to raise.
TEST_F(SmallLearnedTableTest, AFullTableRefusesWithAClearErrorAndKeepsWhatItHolds) {
  uint32_t n = 0;
  while (table_.put(1, nth(n), 1).ok()) ++n;
  EXPECT_EQ(n, 2U * SEBPF_LEARNED_WAYS);
  const Status full = table_.put(1, nth(n), 1);
  EXPECT_EQ(full.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(full.error().message().find("max_host_rules"), std::string::npos);
  for (uint32_t i = 0; i < n; ++i) EXPECT_TRUE(table_.get(1, nth(i))) << i;
  ASSERT_TRUE(table_.erase(1, nth(0)));
  EXPECT_TRUE(table_.put(1, nth(n), 1).ok()) << "an erased slot is reused";
}

TEST(LearnedTableSizeTest, ABucketCountThatIsNotAPowerOfTwoIsCutToOne) {
  std::vector<sebpf_learned_bucket> memory(3);
  LearnedTable table(memory, 1000000);
  uint32_t n = 0;
  while (table.put(1, nth(n), 1).ok()) ++n;
  EXPECT_EQ(n, 2U * SEBPF_LEARNED_WAYS) << "two buckets used, the third never named";
  for (const auto& slot : memory[2].slot) EXPECT_EQ(slot.ruleset, 0U);

  LearnedTable none({}, 1000000);
  EXPECT_EQ(none.put(1, nth(0), 1).error().code(), Errc::kResourceExhausted);
  EXPECT_FALSE(none.get(1, nth(0)));
}

}  // namespace
}  // namespace sebpf::datapath
