// The limit on log lines a peer can cause: a burst, then a steady rate,
// per event and source, and a ceiling over all sources; the lines left out
// counted on the next one written.
#include "daemon/log_rate_limit.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sebpf::daemon {
namespace {

using std::chrono::milliseconds;

TEST(LogRateLimitTest, ABurstThenASteadyRateAndWhatWasLeftOutIsCounted) {
  LogRateLimit limit({3, 2.0}, {100, 100.0});  // 3 at once, then 2 a second
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limit.admit("timeout", 1, t0), 0U) << i;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(limit.admit("timeout", 1, t0), std::nullopt) << i;
  EXPECT_EQ(limit.admit("timeout", 1, t0 + milliseconds(400)), std::nullopt) << "0.8 of a line";
  EXPECT_EQ(limit.admit("timeout", 1, t0 + milliseconds(500)), 6U) << "a line, after 6 left out";
  EXPECT_EQ(limit.admit("timeout", 1, t0 + milliseconds(500)), std::nullopt);
  // Quiet for long: the burst is back, and no more than the burst.
  const auto later = t0 + std::chrono::minutes(5);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.admit("timeout", 1, later).has_value()) << i;
  EXPECT_EQ(limit.admit("timeout", 1, later), std::nullopt);
}

TEST(LogRateLimitTest, EachEventHasABudgetOfItsOwn) {
  LogRateLimit limit({1, 1.0}, {100, 100.0});
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  EXPECT_EQ(limit.admit("dns_upstream_timeout", 1, t0), 0U);
  EXPECT_EQ(limit.admit("dns_upstream_timeout", 1, t0), std::nullopt);
  EXPECT_EQ(limit.admit("dns_learn_failed", 1, t0), 0U) << "another event is not held back";
}

// One workload flooding an event (its queries timing out, say) must not
// hide the same event of another: each source has a budget of its own.
TEST(LogRateLimitTest, EachSourceHasABudgetOfItsOwn) {
  LogRateLimit limit({2, 1.0}, {100, 100.0});
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(limit.admit("dns_upstream_timeout", 7, t0), 0U);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(limit.admit("dns_upstream_timeout", 7, t0), std::nullopt);
  EXPECT_EQ(limit.admit("dns_upstream_timeout", 8, t0), 0U) << "held back by another's flood";
  EXPECT_EQ(limit.admit("dns_upstream_timeout", 0, t0), 0U) << "the host's own";
  EXPECT_EQ(limit.admit("dns_upstream_timeout", 7, t0 + std::chrono::seconds(1)), 50U);
}

// Many sources at once: the log still gets no more than the ceiling, and
// what it left out of a source is counted on that source's next line.
TEST(LogRateLimitTest, AllSourcesTogetherStayUnderTheCeiling) {
  LogRateLimit limit({2, 1.0}, {3, 1.0});
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  int admitted = 0;
  for (uint64_t source = 1; source <= 100; ++source) {
    admitted += limit.admit("dns_learn_failed", source, t0).has_value() ? 1 : 0;
  }
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(limit.admit("dns_learn_failed", 100, t0 + std::chrono::seconds(1)), 1U);
  EXPECT_EQ(limit.admit("dns_learn_failed", 99, t0 + std::chrono::seconds(1)), std::nullopt);
}

// Attachments come and go: a budget with nothing to tell (full again, no
// line left out) is forgotten within a minute, one with lines left out is
// kept until it has told them.
TEST(LogRateLimitTest, BudgetsOfSourcesThatWentQuietAreForgotten) {
  LogRateLimit limit({1, 1.0}, {10'000, 10'000.0});
  const auto t0 = LogRateLimit::Clock::time_point() + std::chrono::hours(1);
  for (uint64_t source = 1; source <= 1000; ++source) limit.admit("dns_learn_failed", source, t0);
  EXPECT_EQ(limit.admit("dns_learn_failed", 5, t0), std::nullopt);
  EXPECT_EQ(limit.budgets_held(), 1000U);
  const auto later = t0 + std::chrono::minutes(2);
  EXPECT_EQ(limit.admit("dns_learn_failed", 2000, later), 0U);
  EXPECT_EQ(limit.budgets_held(), 2U) << "the new one, and the one with a line left out";
  EXPECT_EQ(limit.admit("dns_learn_failed", 5, later), 1U);
}

TEST(LogRateLimitTest, AWarningLineSaysHowManyWereLeftOutBeforeIt) {
  char* text = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  ASSERT_NE(out, nullptr);
  Logger log(LogLevel::kInfo, out);
  LogRateLimit limit({1, 10.0}, {100, 100.0});
  limit.warning(log, "dns_learn_failed", 1, {{"detail", "first"}});
  limit.warning(log, "dns_learn_failed", 1, {{"detail", "left out"}});
  limit.warning(log, "dns_learn_failed", 1, {{"detail", "left out"}});
  std::this_thread::sleep_for(milliseconds(150));  // a line's worth at 10 a second
  limit.warning(log, "dns_learn_failed", 1, {{"detail", "after"}});
  std::fclose(out);
  std::vector<nlohmann::json> lines;
  std::istringstream in{std::string(text, size)};
  std::free(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0]["level"], "warning");
  EXPECT_EQ(lines[0]["detail"], "first");
  EXPECT_FALSE(lines[0].contains("left_out"));
  EXPECT_EQ(lines[1]["detail"], "after");
  EXPECT_EQ(lines[1]["left_out"], "2");
}

}  // namespace
}  // namespace sebpf::daemon
