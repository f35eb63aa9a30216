// The host's upstream budget shared among the endpoints: alone, one gets
// all of it; flooding, it gets what the others leave, never their parts.
#include "dns/upstream_budget.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace sebpf::dns {
namespace {

using std::chrono::milliseconds;
using Clock = UpstreamBudget::Clock;

constexpr uint32_t kPerSecond = 100;
// Over 10 seconds: the budget, and a second's worth at once (a little more
// when endpoints start asking in the same instant: each new one's part is
// there before the older ones' shrink).
constexpr int kMostIn10Seconds = 11 * kPerSecond + kPerSecond / 10;
const Clock::time_point kStart = Clock::time_point() + std::chrono::hours(1);

// Over `seconds`, every millisecond: each endpoint in turn asks as many
// times as `asks[i]` says for that millisecond. Returns what each got.
std::vector<int> run(UpstreamBudget& budget, std::vector<UpstreamBudget::Share>& shares,
                     int seconds, const std::vector<int (*)(int)>& asks) {
  std::vector<int> got(shares.size(), 0);
  for (int ms = 0; ms < seconds * 1000; ++ms) {
    const Clock::time_point now = kStart + milliseconds(ms);
    for (size_t i = 0; i < shares.size(); ++i) {
      for (int n = asks[i](ms); n > 0; --n) got[i] += budget.take(shares[i], now) ? 1 : 0;
    }
  }
  return got;
}

int flood(int) { return 5; }                       // 5,000 a second
int every_100ms(int ms) { return ms % 100 == 0; }  // 10 a second
int every_ms(int) { return 1; }                    // 1,000 a second

TEST(UpstreamBudgetTest, AnEndpointAloneMayUseAllOfIt) {
  UpstreamBudget budget(kPerSecond);
  std::vector<UpstreamBudget::Share> shares(1);
  const std::vector<int> got = run(budget, shares, 10, {flood});
  EXPECT_GE(got[0], 10 * static_cast<int>(kPerSecond));
  EXPECT_LE(got[0], kMostIn10Seconds) << "a second's burst, no more";
}

TEST(UpstreamBudgetTest, AQuietEndpointsQueriesGoOutWhileAnotherFloods) {
  UpstreamBudget budget(kPerSecond);
  std::vector<UpstreamBudget::Share> shares(2);
  const std::vector<int> got = run(budget, shares, 10, {flood, every_100ms});
  EXPECT_EQ(got[1], 100) << "every one of the quiet endpoint's queries";
  EXPECT_GE(got[0], 10 * static_cast<int>(kPerSecond) - 100 - 10) << "the flood gets the rest";
  EXPECT_LE(got[0] + got[1], kMostIn10Seconds) << "and no more";
}

TEST(UpstreamBudgetTest, OfTwoFloodingEndpointsTheLessGreedyStillGetsItsPart) {
  UpstreamBudget budget(kPerSecond);
  std::vector<UpstreamBudget::Share> shares(2);
  // The first asks five times as often, and always first.
  const std::vector<int> got = run(budget, shares, 10, {flood, every_ms});
  EXPECT_GE(got[1], 10 * static_cast<int>(kPerSecond) / 2 - 5) << "half of it";
  EXPECT_LE(got[0] + got[1], kMostIn10Seconds);
}

TEST(UpstreamBudgetTest, TheFairPartShrinksAsMoreEndpointsAsk) {
  UpstreamBudget budget(kPerSecond);
  std::vector<UpstreamBudget::Share> shares(4);
  const std::vector<int> got = run(budget, shares, 10, {flood, flood, flood, every_ms});
  for (int g : got) EXPECT_GE(g, 10 * static_cast<int>(kPerSecond) / 4 - 5);
  EXPECT_LE(got[0] + got[1] + got[2] + got[3], kMostIn10Seconds);
}

}  // namespace
}  // namespace sebpf::dns
