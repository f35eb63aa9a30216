// Log lines a peer can cause (one per DNS query, say) must not flood the
// log: each event of each source (an attachment, or 0 for the host) gets a
// burst of lines, then a steady rate, and the count of lines left out goes
// with the next line written. Budgets per source, so that one workload's
// flood of an event does not hide the same event of the others; and a
// ceiling over all sources together, so that many at once do not flood the
// log either.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/token_bucket.h"
#include "daemon/logger.h"

namespace sebpf::daemon {

class LogRateLimit {
 public:
  using Clock = TokenBucket::Clock;

  struct Rate {
    uint32_t burst = 0;
    double per_second = 0;
  };

  LogRateLimit(Rate per_source, Rate overall) : per_source_(per_source), overall_(overall) {}

  // Whether a line for `event` of `source` may be written at `now`: if so,
  // how many lines of that event and source were left out since the last
  // one written. Thread-safe.
  std::optional<uint64_t> admit(std::string_view event, uint64_t source, Clock::time_point now);
  // Writes `event` to `log` as a warning if admitted now, with `left_out`
  // when lines were left out before it.
  void warning(Logger& log, std::string_view event, uint64_t source, Logger::Fields fields);

  // Budgets held (for the tests: one with nothing to tell goes within a
  // minute of being full again, so that sources that come and go do not
  // make the table grow).
  size_t budgets_held() const;

 private:
  struct Budget {
    TokenBucket lines;  // full when new
    uint64_t left_out = 0;
  };
  static void refill(TokenBucket& b, Rate rate, Clock::time_point now) {
    b.refill(rate.per_second, rate.burst, now);
  }
  void forget_idle_locked(Clock::time_point now);

  const Rate per_source_;
  const Rate overall_;
  mutable std::mutex mu_;
  // By event (a few names), then by source.
  std::map<std::string, std::map<uint64_t, Budget>, std::less<>> budgets_;
  TokenBucket all_;  // the ceiling over every event and source
  Clock::time_point next_forget_;
};

// For lines workloads cause (DNS warnings): per attachment a burst of 20,
// then one a second; for all of them together 200, then 20 a second.
inline constexpr LogRateLimit::Rate kWorkloadLinesPerSource{.burst = 20, .per_second = 1};
inline constexpr LogRateLimit::Rate kWorkloadLinesOverall{.burst = 200, .per_second = 20};

}  // namespace sebpf::daemon
