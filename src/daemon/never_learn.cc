#include "daemon/never_learn.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace sebpf::daemon {
namespace {

// RFC 6052's well-known prefix, the one the filter translates.
constexpr std::array<uint8_t, 12> kNat64Prefix = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

}  // namespace

NeverLearnRanges::NeverLearnRanges(std::span<const net::IpPrefix> prefixes) {
  for (const net::IpPrefix& p : prefixes) {
    auto& lengths = p.family() == net::Family::kIPv4 ? v4_ : v6_;
    auto of_length = std::find_if(lengths.begin(), lengths.end(),
                                  [&](const OfLength& l) { return l.length == p.length(); });
    if (of_length == lengths.end()) {
      of_length = lengths.insert(lengths.end(), OfLength{p.length(), {}});
    }
    of_length->prefixes.insert(p.address());
  }
}

bool NeverLearnRanges::covers_in_family(const net::IpAddress& address) const {
  const auto& lengths = address.family() == net::Family::kIPv4 ? v4_ : v6_;
  return std::any_of(lengths.begin(), lengths.end(), [&](const OfLength& l) {
    return l.prefixes.contains(address.masked(l.length));
  });
}

bool NeverLearnRanges::covers(const net::IpAddress& address) const {
  if (covers_in_family(address)) return true;
  if (address.family() != net::Family::kIPv6 ||
      !std::equal(kNat64Prefix.begin(), kNat64Prefix.end(), address.bytes().begin())) {
    return false;
  }
  uint32_t embedded = 0;
  std::memcpy(&embedded, address.bytes().data() + kNat64Prefix.size(), sizeof embedded);
  return covers_in_family(net::IpAddress::v4(embedded));
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
