#include "net/ip_prefix.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace sebpf::net {
namespace {

Error invalid(std::string_view text, std::string_view why) {
  return Error(Errc::kInvalidArgument,
               "\"" + std::string(text) + "\" is not a valid IP address: " + std::string(why));
}

Error invalid_prefix(std::string_view text, std::string_view why) {
  return Error(Errc::kInvalidArgument,
               "\"" + std::string(text) + "\" is not a valid CIDR prefix: " + std::string(why));
}

// inet_pton accepts "01.2.3.4" on some libcs; we refuse it everywhere.
bool has_leading_zero_octet(std::string_view v4) {
  size_t start = 0;
  while (start <= v4.size()) {
    size_t end = v4.find('.', start);
    if (end == std::string_view::npos) end = v4.size();
    if (end - start > 1 && v4[start] == '0') return true;
    start = end + 1;
  }
  return false;
}

// The prefix with all bits after `length` cleared.
IpAddress masked(const IpAddress& a, int length) {
  std::array<uint8_t, 16> b = a.bytes();
  const int total = a.max_prefix_length() / 8;
  for (int i = 0; i < total; ++i) {
    const int keep = std::clamp(length - i * 8, 0, 8);
    b[static_cast<size_t>(i)] &= static_cast<uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  if (a.family() == Family::kIPv4) {
    uint32_t v = 0;
    std::memcpy(&v, b.data(), 4);
    return IpAddress::v4(v);
  }
  return IpAddress::v6(b);
}

}  // namespace

Result<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty()) return invalid(text, "it is empty");
  if (text.size() > INET6_ADDRSTRLEN) return invalid(text, "it is too long");
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return invalid(text, "it has whitespace");
  }
  if (text.find('%') != std::string_view::npos) {
    return invalid(text, "zone ids (\"%eth0\") are not allowed in rules");
  }
  if (text.front() == '[') return invalid(text, "remove the brackets");
  const std::string s(text);
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    if (has_leading_zero_octet(text)) {
      return invalid(text, "an octet has a leading zero (ambiguous: octal or decimal?)");
    }
    in_addr v4{};
    if (inet_pton(AF_INET, s.c_str(), &v4) != 1) {
      return invalid(text, "expected four decimal octets 0-255, like 192.0.2.1");
    }
    a.family_ = Family::kIPv4;
    std::memcpy(a.bytes_.data(), &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) != 1) {
    return invalid(text, "expected an IPv6 address like 2001:db8::1");
  }
  a.family_ = Family::kIPv6;
  std::memcpy(a.bytes_.data(), &v6, 16);
  return a;
}

IpAddress IpAddress::v4(uint32_t network_order) {
  IpAddress a;
  a.family_ = Family::kIPv4;
  std::memcpy(a.bytes_.data(), &network_order, 4);
  return a;
}

IpAddress IpAddress::v6(const std::array<uint8_t, 16>& bytes) {
  IpAddress a;
  a.family_ = Family::kIPv6;
  a.bytes_ = bytes;
  return a;
}

uint32_t IpAddress::v4_network_order() const {
  uint32_t v = 0;
  std::memcpy(&v, bytes_.data(), 4);
  return v;
}

bool IpAddress::is_v4_mapped() const {
  static constexpr std::array<uint8_t, 12> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return family_ == Family::kIPv6 && std::equal(kMapped.begin(), kMapped.end(), bytes_.begin());
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family_ == Family::kIPv4 ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

Result<IpPrefix> IpPrefix::make(const IpAddress& address, int length) {
  const std::string shown = address.to_string() + "/" + std::to_string(length);
  if (length < 0 || length > address.max_prefix_length()) {
    return invalid_prefix(
        shown, "the prefix length must be 0 to " + std::to_string(address.max_prefix_length()));
  }
  const IpAddress base = masked(address, length);
  if (base != address) {
    return invalid_prefix(shown, "bits are set after the prefix length; did you mean \"" +
                                     base.to_string() + "/" + std::to_string(length) + "\"?");
  }
  // The kernel sees traffic to ::ffff:a.b.c.d as IPv4, so such a rule would
  // never match anything.
  if (address.is_v4_mapped() && length >= 96) {
    const auto& b = address.bytes();
    const uint32_t v4 = static_cast<uint32_t>(b[12]) | static_cast<uint32_t>(b[13]) << 8 |
                        static_cast<uint32_t>(b[14]) << 16 | static_cast<uint32_t>(b[15]) << 24;
    return invalid_prefix(shown, "IPv4-mapped IPv6 addresses are matched as IPv4; use " +
                                     IpAddress::v4(v4).to_string() + "/" +
                                     std::to_string(length - 96));
  }
  IpPrefix p;
  p.address_ = address;
  p.length_ = length;
  return p;
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  auto address = IpAddress::parse(addr_text);
  if (!address.ok()) {
    if (slash == std::string_view::npos) return address.error();
    return invalid_prefix(text, address.error().message());
  }
  if (slash == std::string_view::npos) return make(*address, address->max_prefix_length());
  const std::string_view len_text = text.substr(slash + 1);
  if (len_text.empty() || len_text.size() > 3 ||
      !std::all_of(len_text.begin(), len_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return invalid_prefix(text, "the prefix length must be a decimal number after one \"/\"");
  }
  if (len_text.size() > 1 && len_text[0] == '0') {
    return invalid_prefix(text, "the prefix length has a leading zero");
  }
  int length = 0;
  for (char c : len_text) length = length * 10 + (c - '0');
  auto prefix = make(*address, length);
  if (!prefix.ok()) {
    // Quote what the user wrote, not our re-rendering of it.
    const std::string& m = prefix.error().message();
    return Error(Errc::kInvalidArgument,
                 "\"" + std::string(text) + "\"" + m.substr(m.find(" is not a valid")));
  }
  return prefix;
}

bool IpPrefix::contains(const IpAddress& a) const {
  return a.family() == family() && masked(a, length_) == address_;
}

std::string IpPrefix::to_string() const {
  return address_.to_string() + "/" + std::to_string(length_);
}

}  // namespace sebpf::net
