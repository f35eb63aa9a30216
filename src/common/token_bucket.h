// A token bucket: refilled at a rate up to a most, taken from one token at
// a time. The rate limits (an endpoint's queries, the log's lines, the
// host's upstream budget) each hold one or more; callers lock.
#pragma once

#include <algorithm>
#include <chrono>

namespace sebpf {

struct TokenBucket {
  using Clock = std::chrono::steady_clock;

  double tokens = 0;
  Clock::time_point refilled;  // the clock's epoch: full at the first refill

  // Adds what `per_second` gives over the time since the last refill, up to
  // `most`; returns what did not fit. A `now` older than the last refill
  // (another thread's, taken before it) adds nothing.
  double refill(double per_second, double most, Clock::time_point now) {
    const double elapsed = std::chrono::duration<double>(now - refilled).count();
    refilled = std::max(refilled, now);
    const double gained = tokens + std::max(0.0, elapsed) * per_second;
    tokens = std::min(most, gained);
    return std::max(0.0, gained - most);
  }

  // Takes a token if there is one.
  bool take() {
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }
};

}  // namespace sebpf
