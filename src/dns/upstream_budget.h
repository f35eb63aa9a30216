// The host's budget of queries to its upstream resolvers
// (dns.max_upstream_qps), shared fairly among the endpoints. A resolver
// often allows a host only so many queries a second (a cloud's, about a
// thousand packets a second per interface); past that it drops them, and
// every workload's names fail. Each endpoint's own limit (dns.max_qps)
// cannot prevent that when several ask at once, so the endpoints draw on
// one budget, in which each endpoint asking has a fair part: the budget
// over the number of endpoints that asked in this second or the last.
//
// An endpoint within its fair part takes from the budget first; one past
// it takes only what would leave half a second's worth for the others. So
// a workload flooding its endpoint gets what the others leave unused, and
// never their parts: a quiet endpoint's queries still go out while another
// sends as fast as it can.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace sebpf::dns {

class UpstreamBudget {
 public:
  using Clock = std::chrono::steady_clock;

  // One endpoint's part; the endpoint owns it, the budget's lock guards it.
  // A new one is full: a workload's first names go out at once.
  struct Share {
    double tokens = 0;
    Clock::time_point refilled;    // the clock's epoch: full at the first take
    int64_t asked_in_second = -1;  // the last second it asked in
  };

  // `per_second` > 0: queries a second to all upstreams together, and at
  // most that many at once.
  explicit UpstreamBudget(uint32_t per_second);

  // Whether `share`'s endpoint may send a query upstream at `now`: if so,
  // the query is taken from the budget. Thread-safe.
  bool take(Share& share, Clock::time_point now);

 private:
  const double per_second_;
  std::mutex mu_;
  double tokens_;
  Clock::time_point refilled_;
  // Endpoints that asked in second_ and in the second before it.
  int64_t second_ = -1;
  uint32_t asking_now_ = 0, asking_before_ = 0;
};

}  // namespace sebpf::dns
