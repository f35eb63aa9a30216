#include "daemon/log_rate_limit.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace sebpf::daemon {

std::optional<uint64_t> LogRateLimit::admit(std::string_view event, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = budgets_.find(event);
  if (it == budgets_.end()) {
    it = budgets_.emplace(std::string(event), Budget{static_cast<double>(burst_), now, 0}).first;
  }
  Budget& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
  b.tokens = std::min<double>(burst_, b.tokens + std::max(0.0, elapsed) * per_second_);
  b.refilled = now;
  if (b.tokens < 1) {
    b.left_out++;
    return std::nullopt;
  }
  b.tokens -= 1;
  return std::exchange(b.left_out, 0);
}

void LogRateLimit::warning(Logger& log, std::string_view event, Logger::Fields fields) {
  const auto admitted = admit(event, Clock::now());
  if (!admitted) return;
  std::vector<Logger::Field> line(fields);
  if (*admitted > 0) line.emplace_back("left_out", std::to_string(*admitted));
  log.write(LogLevel::kWarning, event, line);
}

}  // namespace sebpf::daemon
