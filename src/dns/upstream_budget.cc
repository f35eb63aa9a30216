#include "dns/upstream_budget.h"

#include <algorithm>

namespace sebpf::dns {
namespace {

using Clock = UpstreamBudget::Clock;

// Adds what `rate` gives over the time since `refilled`, up to `most`.
void refill(double& tokens, Clock::time_point& refilled, double rate, double most,
            Clock::time_point now) {
  const double elapsed = std::chrono::duration<double>(now - refilled).count();
  tokens = std::min(most, tokens + std::max(0.0, elapsed) * rate);
  refilled = std::max(refilled, now);
}

}  // namespace

UpstreamBudget::UpstreamBudget(uint32_t per_second)
    : per_second_(per_second), tokens_(per_second) {}

bool UpstreamBudget::take(Share& share, Clock::time_point now) {
  std::lock_guard lock(mu_);
  const int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (second > second_) {
    asking_before_ = second == second_ + 1 ? asking_now_ : 0;
    asking_now_ = 0;
    second_ = second;
  }
  if (share.asked_in_second != second_) {
    share.asked_in_second = second_;
    asking_now_++;
  }
  const double part = per_second_ / std::max({asking_now_, asking_before_, 1u});
  refill(tokens_, refilled_, per_second_, per_second_, now);
  refill(share.tokens, share.refilled, part, std::max(1.0, part), now);
  if (share.tokens >= 1 && tokens_ >= 1) {
    share.tokens -= 1;
    tokens_ -= 1;
    return true;
  }
  if (tokens_ >= per_second_ / 2 + 1) {  // past its part: only what others leave
    tokens_ -= 1;
    return true;
  }
  return false;
}

}  // namespace sebpf::dns
