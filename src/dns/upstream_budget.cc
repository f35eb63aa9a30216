#include "dns/upstream_budget.h"

#include <algorithm>

namespace sebpf::dns {

bool UpstreamBudget::take(Share& share, Clock::time_point now) {
  std::lock_guard lock(mu_);
  const int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (second > second_) {
    asking_before_ = second == second_ + 1 ? asking_now_ : 0;
    asking_now_ = 0;
    second_ = second;
  }
  // An endpoint not counted among those asking until now (new, or quiet
  // for a second or more) starts with a full part and gives nothing to
  // the pool: the others had its part meanwhile.
  bool fresh = false;
  if (share.asked_in_second != second_) {
    fresh = share.asked_in_second < second_ - 1;
    share.asked_in_second = second_;
    asking_now_++;
  }
  const double part = per_second_ / std::max({asking_now_, asking_before_, 1u});
  const double most = std::max(1.0, part / 2);
  if (fresh) {
    share.part = TokenBucket{.tokens = most, .refilled = now};
  } else {
    const double unused = share.part.refill(part, most, now);
    pool_ = std::min(per_second_ / 2, pool_ + unused);
  }
  if (share.part.take()) return true;
  if (pool_ >= 1) {
    pool_ -= 1;
    return true;
  }
  return false;
}

}  // namespace sebpf::dns
