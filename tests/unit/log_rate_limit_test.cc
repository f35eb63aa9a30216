// The limit on log lines a peer can cause: a burst, then a steady rate,
// and the lines left out counted on the next one written.
#include "daemon/log_rate_limit.h"

#include <gtest/gtest.h>

namespace sebpf::daemon {
namespace {

using std::chrono::milliseconds;

TEST(LogRateLimitTest, ABurstThenASteadyRateAndWhatWasLeftOutIsCounted) {
  LogRateLimit limit(3, 2.0);  // 3 at once, then 2 a second
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limit.admit("timeout", t0), 0U) << i;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(limit.admit("timeout", t0), std::nullopt) << i;
  EXPECT_EQ(limit.admit("timeout", t0 + milliseconds(400)), std::nullopt) << "0.8 of a line";
  EXPECT_EQ(limit.admit("timeout", t0 + milliseconds(500)), 6U) << "a line, after 6 left out";
  EXPECT_EQ(limit.admit("timeout", t0 + milliseconds(500)), std::nullopt);
  // Quiet for long: the burst is back, and no more than the burst.
  const auto later = t0 + std::chrono::minutes(5);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.admit("timeout", later).has_value()) << i;
  EXPECT_EQ(limit.admit("timeout", later), std::nullopt);
}

TEST(LogRateLimitTest, EachEventHasABudgetOfItsOwn) {
  LogRateLimit limit(1, 1.0);
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  EXPECT_EQ(limit.admit("dns_upstream_timeout", t0), 0U);
  EXPECT_EQ(limit.admit("dns_upstream_timeout", t0), std::nullopt);
  EXPECT_EQ(limit.admit("dns_learn_failed", t0), 0U) << "another event is not held back";
}

}  // namespace
}  // namespace sebpf::daemon
