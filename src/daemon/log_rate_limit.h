// Log lines a peer can cause (one per DNS query, say) must not flood the
// log: each event gets a burst of lines, then a steady rate, and the count
// of lines left out goes with the next line written.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/logger.h"

namespace sebpf::daemon {

class LogRateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  LogRateLimit(uint32_t burst, double per_second) : burst_(burst), per_second_(per_second) {}

  // Whether a line for `event` may be written at `now`: if so, how many
  // lines of that event were left out since the last one written.
  // Thread-safe.
  std::optional<uint64_t> admit(std::string_view event, Clock::time_point now);
  // Writes `event` to `log` as a warning if admitted now, with `left_out`
  // when lines were left out before it.
  void warning(Logger& log, std::string_view event, Logger::Fields fields);

 private:
  struct Budget {
    double tokens = 0;
    Clock::time_point refilled;
    uint64_t left_out = 0;
  };

  const uint32_t burst_;
  const double per_second_;
  std::mutex mu_;
  std::map<std::string, Budget, std::less<>> budgets_;  // a few event names
};

}  // namespace sebpf::daemon
