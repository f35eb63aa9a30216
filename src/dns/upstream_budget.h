// The host's budget of queries to its upstream resolvers
// (dns.max_upstream_qps), shared fairly among the endpoints. A resolver
// often allows a host only so many queries a second (a cloud's, about a
// thousand packets a second per interface); past that it drops them, and
// every workload's names fail. Each endpoint's own limit (dns.max_qps)
// cannot prevent that when several ask at once, so the endpoints draw on
// one budget.
//
// Each endpoint asking (in this second or the last) has an equal part of
// the budget: a token bucket of its own, refilled at that part, holding
// half a second's worth. What a part's bucket cannot hold (its endpoint
// asked for less) goes to a pool, up to half a second of the whole budget,
// from which an endpoint whose own bucket is empty may take. So a
// workload flooding its endpoint gets its part and what the others leave
// unused, never their parts: a quiet endpoint's queries go out at once
// while another sends as fast as it can. The upstreams get at most the
// budget a second, and about a second's worth at once (a little more when
// many endpoints start asking in the same instant).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include "common/token_bucket.h"

namespace sebpf::dns {

class UpstreamBudget {
 public:
  using Clock = TokenBucket::Clock;

  // One endpoint's part; the endpoint owns it, the budget's lock guards it.
  struct Share {
    TokenBucket part;
    int64_t asked_in_second = -1;  // the last second it asked in
  };

  // `per_second` > 0: queries a second to all upstreams together.
  explicit UpstreamBudget(uint32_t per_second) : per_second_(per_second) {}

  // Whether `share`'s endpoint may send a query upstream at `now`: if so,
  // the query is taken from its part or the pool. Thread-safe.
  bool take(Share& share, Clock::time_point now);

 private:
  const double per_second_;
  std::mutex mu_;
  double pool_ = 0;  // what parts had no room for
  // Endpoints that asked in second_ and in the second before it.
  int64_t second_ = -1;
  uint32_t asking_now_ = 0, asking_before_ = 0;
};

}  // namespace sebpf::dns
