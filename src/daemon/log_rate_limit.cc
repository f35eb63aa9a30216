#include "daemon/log_rate_limit.h"

#include <iterator>
#include <utility>
#include <vector>

namespace sebpf::daemon {

std::optional<uint64_t> LogRateLimit::admit(std::string_view event, uint64_t source,
                                            Clock::time_point now) {
  std::lock_guard lock(mu_);
  forget_idle_locked(now);
  auto event_budgets = budgets_.find(event);
  if (event_budgets == budgets_.end()) {
    event_budgets = budgets_.emplace(std::string(event), std::map<uint64_t, Budget>{}).first;
  }
  Budget& b = event_budgets->second[source];
  refill(b.lines, per_source_, now);
  refill(all_, overall_, now);
  if (b.lines.tokens < 1 || all_.tokens < 1) {
    b.left_out++;
    return std::nullopt;
  }
  b.lines.take();
  all_.take();
  return std::exchange(b.left_out, 0);
}

void LogRateLimit::forget_idle_locked(Clock::time_point now) {
  if (now < next_forget_) return;
  next_forget_ = now + std::chrono::minutes(1);
  // A full budget with nothing left out is what a new one would be.
  for (auto event = budgets_.begin(); event != budgets_.end();) {
    std::map<uint64_t, Budget>& sources = event->second;
    for (auto source = sources.begin(); source != sources.end();) {
      Budget& b = source->second;
      refill(b.lines, per_source_, now);
      const bool idle = b.left_out == 0 && b.lines.tokens >= per_source_.burst;
      source = idle ? sources.erase(source) : std::next(source);
    }
    event = event->second.empty() ? budgets_.erase(event) : std::next(event);
  }
}

size_t LogRateLimit::budgets_held() const {
  std::lock_guard lock(mu_);
  size_t held = 0;
  for (const auto& [event, sources] : budgets_) held += sources.size();
  return held;
}

void LogRateLimit::warning(Logger& log, std::string_view event, uint64_t source,
                           Logger::Fields fields) {
  const auto admitted = admit(event, source, Clock::now());
  if (!admitted) return;
  std::vector<Logger::Field> line(fields);
  if (*admitted > 0) line.emplace_back("left_out", std::to_string(*admitted));
  log.write(LogLevel::kWarning, event, line);
}

}  // namespace sebpf::daemon
