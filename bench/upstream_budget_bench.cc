// ns per query the host's upstream budget (dns.max_upstream_qps) adds when
// it is on: one take per attempt upstream, under the budget's lock. Run by
// 1 thread, then by 2 at once (the DNS loops on a 2-CPU host), each with
// an endpoint's share of its own; the budget is set high enough that
// every take succeeds, as at saturation below the limit.
//
//   build/bench/sebpf_upstream_budget_bench
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "dns/upstream_budget.h"

namespace {

using sebpf::dns::UpstreamBudget;

constexpr int kTakes = 5'000'000;

// Mean ns per take over `threads` threads taking kTakes each; a negative
// figure if any take was refused (the figures would not be what they say).
double ns_per_take(unsigned threads) {
  UpstreamBudget budget(1u << 30);
  std::vector<UpstreamBudget::Share> shares(threads);
  std::vector<std::thread> workers;
  std::vector<int> refused(threads, 0);
  const auto start = std::chrono::steady_clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      int mine = 0;  // not in `refused` meanwhile: the threads' counts would share a line
      for (int i = 0; i < kTakes; ++i) {
        mine += budget.take(shares[t], UpstreamBudget::Clock::now()) ? 0 : 1;
      }
      refused[t] = mine;
    });
  }
  for (std::thread& w : workers) w.join();
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  for (int r : refused) {
    if (r != 0) return -1;
  }
  return ns / kTakes;  // wall time per take of each thread
}

}  // namespace

int main() {
  for (unsigned threads : {1u, 2u}) {
    std::printf("upstream budget, %u thread%s: %.0f ns per take (Clock::now() included)\n", threads,
                threads == 1 ? "" : "s", ns_per_take(threads));
  }
  return 0;
}
