// The limit on log lines a peer can cause: a burst, then a steady rate,
// and the lines left out counted on the next one written.
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

TEST(LogRateLimitTest, AWarningLineSaysHowManyWereLeftOutBeforeIt) {
  char* text = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  ASSERT_NE(out, nullptr);
  Logger log(LogLevel::kInfo, out);
  LogRateLimit limit(1, 10.0);
  limit.warning(log, "dns_learn_failed", {{"detail", "first"}});
  limit.warning(log, "dns_learn_failed", {{"detail", "left out"}});
  limit.warning(log, "dns_learn_failed", {{"detail", "left out"}});
  std::this_thread::sleep_for(milliseconds(150));  // a line's worth at 10 a second
  limit.warning(log, "dns_learn_failed", {{"detail", "after"}});
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
