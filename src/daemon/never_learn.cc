#include "daemon/never_learn.h"

#include <algorithm>
#include <array>

namespace sebpf::daemon {
namespace {

using Number = NeverLearnRanges::Number;

// RFC 6052's well-known prefix, the one the filter translates.
constexpr std::array<uint8_t, 12> kNat64Prefix = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

Number number_of(const uint8_t* bytes, size_t size) {
  Number n;
  for (size_t i = 0; i < size; ++i) {
    n.high = n.high << 8 | n.low >> 56;
    n.low = n.low << 8 | bytes[i];
  }
  return n;
}

// The number with the low `bits` bits set.
Number low_bits(int bits) {
  const auto ones = [](int n) { return n <= 0 ? 0 : ~uint64_t{0} >> (64 - n); };
  return {bits > 64 ? ones(bits - 64) : 0, bits >= 64 ? ~uint64_t{0} : ones(bits)};
}

Number number_of(const net::IpAddress& address) {
  return number_of(address.bytes().data(), address.family() == net::Family::kIPv4 ? 4 : 16);
}

}  // namespace

NeverLearnRanges::NeverLearnRanges(std::span<const net::IpPrefix> prefixes) {
  for (const net::IpPrefix& p : prefixes) {
    const int host_bits = p.address().max_prefix_length() - p.length();
    // A prefix's address has its host bits cleared (IpPrefix checks).
    const Number first = number_of(p.address());
    const Number span = low_bits(host_bits);
    (p.family() == net::Family::kIPv4 ? v4_ : v6_)
        .push_back({first, {first.high | span.high, first.low | span.low}});
  }
  for (auto* intervals : {&v4_, &v6_}) {
    std::sort(intervals->begin(), intervals->end(),
              [](const Interval& a, const Interval& b) { return a.first < b.first; });
    // Prefixes either nest or are apart: merging keeps the outer ones.
    std::vector<Interval> merged;
    for (const Interval& i : *intervals) {
      if (!merged.empty() && i.first <= merged.back().last) {
        merged.back().last = std::max(merged.back().last, i.last);
      } else {
        merged.push_back(i);
      }
    }
    *intervals = std::move(merged);
  }
}

bool NeverLearnRanges::in(const std::vector<Interval>& intervals, Number n) {
  // The last interval starting at or before n is the only one that can hold it.
  auto after = std::upper_bound(intervals.begin(), intervals.end(), n,
                                [](Number value, const Interval& i) { return value < i.first; });
  return after != intervals.begin() && n <= std::prev(after)->last;
}

bool NeverLearnRanges::covers(const net::IpAddress& address) const {
  if (address.family() == net::Family::kIPv4) return in(v4_, number_of(address));
  if (in(v6_, number_of(address))) return true;
  const auto& bytes = address.bytes();
  if (!std::equal(kNat64Prefix.begin(), kNat64Prefix.end(), bytes.begin())) return false;
  return in(v4_, number_of(bytes.data() + kNat64Prefix.size(), 4));
}

std::vector<net::IpPrefix> default_never_learn() {
  static constexpr const char* kRanges[] = {
      "0.0.0.0/8",       // "this network": 0.0.0.0 reaches the local host
      "10.0.0.0/8",      // private
      "100.64.0.0/10",   // shared address space (carrier-grade NAT; a cloud's metadata service)
      "127.0.0.0/8",     // loopback
      "169.254.0.0/16",  // link-local: instance metadata at 169.254.169.254
      "172.16.0.0/12",   // private
      "192.168.0.0/16",  // private
      "224.0.0.0/4",     // multicast
      "240.0.0.0/4",     // reserved, and the broadcast address
      "::/128",          // unspecified
      "::1/128",         // loopback
      "fc00::/7",        // unique local: private, and a cloud's IPv6 metadata service
      "fe80::/10",       // link-local
      "ff00::/8",        // multicast
  };
  std::vector<net::IpPrefix> out;
  for (const char* text : kRanges) out.push_back(*net::IpPrefix::parse(text));
  return out;
}

}  // namespace sebpf::daemon
