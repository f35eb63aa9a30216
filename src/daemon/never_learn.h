// Address ranges that DNS answers never open (dns.never_learn). An allowed
// name is only as trustworthy as whoever serves its zone: a name the
// workload can have pointed anywhere (a denylist DNS mode, a user-content
// domain under an allowed one) would otherwise turn "reach what DNS
// resolves" into "reach the cloud's instance metadata service, the host,
// the internal network". Answers naming such addresses are still released;
// only an explicit CIDR rule allows them.
#pragma once

#include <compare>
#include <cstdint>
#include <span>
#include <vector>

#include "net/ip_prefix.h"

namespace sebpf::daemon {

class NeverLearnRanges {
 public:
  NeverLearnRanges() = default;
  explicit NeverLearnRanges(std::span<const net::IpPrefix> prefixes);

  // Whether `address` is in one of the ranges. An IPv6 address in the
  // NAT64 prefix 64:ff9b::/96 is also checked as the IPv4 address it
  // embeds, since the filter lets such a destination through as that host
  // (docs/architecture.md, "The decision").
  bool covers(const net::IpAddress& address) const;

  // An address as a 128-bit number (IPv4 in the low bits), to compare with
  // ranges of its family.
  struct Number {
    uint64_t high = 0, low = 0;
    auto operator<=>(const Number&) const = default;
  };

 private:
  // Each family's ranges as sorted, disjoint intervals: a binary search per
  // address (every address of every answer is checked; hashing it once per
  // prefix length cost ~140 ns with the default list).
  struct Interval {
    Number first, last;
  };
  static bool in(const std::vector<Interval>& intervals, Number n);

  std::vector<Interval> v4_, v6_;
};

// The default of dns.never_learn: addresses that are never a destination
// on the internet (loopback, "this network", link-local, multicast,
// reserved and broadcast) and the private and shared ranges (RFC 1918,
// RFC 6598, unique local IPv6), where instance metadata services and
// internal networks live.
std::vector<net::IpPrefix> default_never_learn();

}  // namespace sebpf::daemon
