// ns per DNS message parsed: a client's query (the proxy's per-query hot
// path) and a typical upstream answer (CNAME + 4 A + 2 AAAA, compressed)
// including the walk that collects the addresses to learn.
//
//   build/bench/sebpf_dns_message_bench
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "dns/answer_addresses.h"
#include "dns/message.h"

namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
void put_name(Bytes& b, const std::string& dotted) {
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    b.insert(b.end(), dotted.begin() + static_cast<long>(start),
             dotted.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
}
void header(Bytes& b, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ar) {
  for (uint16_t v : {uint16_t{0x1234}, flags, qd, an, uint16_t{0}, ar}) put16(b, v);
}
void opt(Bytes& b) {
  b.push_back(0);
  put16(b, sebpf::dns::type::kOpt);
  put16(b, 1232);
  put32(b, 0);
  put16(b, 0);
}

Bytes query() {
  Bytes b;
  header(b, 0x0100, 1, 0, 1);
  put_name(b, "files.pkg-mirror.example.org");
  put16(b, sebpf::dns::type::kA);
  put16(b, 1);
  opt(b);
  return b;
}

Bytes answer() {
  Bytes b;
  header(b, 0x8180, 1, 7, 1);
  put_name(b, "files.pkg-mirror.example.org");
  put16(b, sebpf::dns::type::kA);
  put16(b, 1);
  put16(b, 0xc00c);
  put16(b, sebpf::dns::type::kCname);
  put16(b, 1);
  put32(b, 300);
  Bytes target;
  put_name(target, "edge.cdn.example.net");
  put16(b, static_cast<uint16_t>(target.size()));
  const uint16_t target_at = static_cast<uint16_t>(b.size());
  b.insert(b.end(), target.begin(), target.end());
  for (int i = 0; i < 6; ++i) {
    const bool v6 = i >= 4;
    put16(b, static_cast<uint16_t>(0xc000 | target_at));
    put16(b, v6 ? sebpf::dns::type::kAaaa : sebpf::dns::type::kA);
    put16(b, 1);
    put32(b, 60);
    put16(b, v6 ? 16 : 4);
    if (v6) {
      const uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                             0,    0,    0,    0,    0, 0, 0, static_cast<uint8_t>(i)};
      b.insert(b.end(), a, a + 16);
    } else {
      const uint8_t a[4] = {198, 51, 100, static_cast<uint8_t>(i)};
      b.insert(b.end(), a, a + 4);
    }
  }
  opt(b);
  return b;
}

template <typename Fn>
double ns_per_call(int iterations, Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) fn();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / iterations;
}

}  // namespace

int main() {
  constexpr int kIterations = 1'000'000;
  const Bytes q = query();
  const Bytes a = answer();
  size_t sink = 0;
  const double query_ns = ns_per_call(kIterations, [&] {
    auto parsed = sebpf::dns::parse_query(q);
    sink += parsed.ok() ? parsed->question.name.size() : 0;
  });
  const double answer_ns = ns_per_call(kIterations, [&] {
    auto parsed = sebpf::dns::parse_message(a);
    if (!parsed.ok()) return;
    auto learned = sebpf::dns::addresses_for(*parsed, parsed->questions[0].name);
    sink += learned.ok() ? learned->addresses.size() : 0;
  });
  std::printf("# ns per message, %d iterations each\n", kIterations);
  std::printf("parse_query                 (%3zu bytes) %8.1f ns\n", q.size(), query_ns);
  std::printf("parse_message+addresses_for (%3zu bytes) %8.1f ns\n", a.size(), answer_ns);
  return sink == 0 ? 1 : 0;
}
