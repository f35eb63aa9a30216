// ns per learned host written to the learned-host table (what the DNS
// endpoint does for every address of every answer), in batches of a DNS
// loop turn's size, with and without prefetching the batch's buckets
// first (as RuleStore::write_all does). The table is the default size
// (max_host_rules 131072: 32,768 buckets, 10 MiB) in plain memory, and the
// caches are flushed before each pass, as a busy host's would be.
//
//   build/bench/sebpf_learned_table_bench [hosts] [batch]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "datapath/learned_table.h"

namespace {

using sebpf::datapath::LearnedTable;
using sebpf::net::IpAddress;

constexpr uint32_t kMaxHosts = 131072;
constexpr size_t kBuckets = 2 * kMaxHosts / SEBPF_LEARNED_WAYS;
constexpr int kPasses = 5;

// 2001:db8:2::<i>, as the DNS benchmark's zone names them.
std::vector<IpAddress> hosts(size_t n) {
  std::vector<IpAddress> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::array<uint8_t, 16> bytes{0x20, 0x01, 0x0d, 0xb8, 0, 2};
    for (int b = 0; b < 4; ++b) bytes[15 - b] = static_cast<uint8_t>(i >> (8 * b));
    out.push_back(IpAddress::v6(bytes));
  }
  return out;
}

void flush_caches() {
  static std::vector<uint8_t> junk(64 << 20);
  for (size_t i = 0; i < junk.size(); i += 64) junk[i]++;
}

// One pass: every host put once, `batch` at a time. Returns ns per put.
double pass(LearnedTable& table, uint32_t ruleset, std::span<const IpAddress> all, size_t batch,
            bool prefetch) {
  flush_caches();
  const auto start = std::chrono::steady_clock::now();
  for (size_t first = 0; first < all.size(); first += batch) {
    const auto turn = all.subspan(first, std::min(batch, all.size() - first));
    if (prefetch) {
      for (const IpAddress& a : turn) table.prefetch(ruleset, a);
    }
    for (const IpAddress& a : turn) {
      if (!table.put(ruleset, a, 1'000'000'000'000ULL + first).ok()) std::abort();
    }
  }
  const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  return took.count() / static_cast<double>(all.size());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100000;
  const size_t batch = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 8;
  if (n == 0 || n > kMaxHosts || batch == 0) {
    std::fprintf(stderr, "usage: %s [hosts 1-%u] [batch >= 1]\n", argv[0], kMaxHosts);
    return 2;
  }
  const std::vector<IpAddress> all = hosts(n);
  std::vector<sebpf_learned_bucket> memory(kBuckets);
  std::printf(
      "learned-host table: %zu buckets (%zu MiB), %zu hosts in batches of %zu, median "
      "of %d passes\n",
      kBuckets, sizeof(sebpf_learned_bucket) * kBuckets >> 20, n, batch, kPasses);
  for (const bool prefetch : {false, true}) {
    std::vector<double> fresh, refresh;
    for (int p = 0; p < kPasses; ++p) {
      std::fill(memory.begin(), memory.end(), sebpf_learned_bucket{});
      LearnedTable table(memory, kMaxHosts);
      fresh.push_back(pass(table, 1, all, batch, prefetch));
      refresh.push_back(pass(table, 1, all, batch, prefetch));
    }
    std::printf("%-12s new host %6.1f ns/put   held host %6.1f ns/put\n",
                prefetch ? "prefetched" : "one by one", median(fresh), median(refresh));
  }
  return 0;
}
