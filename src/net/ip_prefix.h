// IP addresses and CIDR prefixes as users write them in rules. Parsing is
// strict: anything ambiguous is rejected with a message that says how to
// write it, because a security product must never quietly change a rule.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sebpf::net {

enum class Family : uint8_t { kIPv4 = 4, kIPv6 = 6 };

class IpAddress {
 public:
  // "192.0.2.1" or "2001:db8::1". Rejects whitespace, IPv4 octets with
  // leading zeros (octal in some parsers), other than 4 IPv4 parts, zone ids,
  // brackets, and whatever inet_pton rejects. Errors are kInvalidArgument.
  static Result<IpAddress> parse(std::string_view text);
  static IpAddress v4(uint32_t network_order);
  static IpAddress v6(const std::array<uint8_t, 16>& bytes);

  Family family() const { return family_; }
  int max_prefix_length() const { return family_ == Family::kIPv4 ? 32 : 128; }
  // IPv4: the 4 bytes first, the rest zero; IPv6: all 16.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  uint32_t v4_network_order() const;   // only meaningful for IPv4
  bool is_v4_mapped() const;           // IPv6 in ::ffff:0:0/96
  IpAddress masked(int length) const;  // all bits after the first `length` cleared
  std::string to_string() const;       // inet_ntop's canonical form (RFC 5952)

  // Family first (IPv4 sorts before IPv6), then the bytes.
  auto operator<=>(const IpAddress&) const = default;
  bool operator==(const IpAddress&) const = default;

 private:
  Family family_ = Family::kIPv4;
  std::array<uint8_t, 16> bytes_{};
};

// For unordered containers of addresses.
struct IpAddressHash {
  size_t operator()(const IpAddress& address) const noexcept;
};

class IpPrefix {
 public:
  // "192.0.2.0/24", "2001:db8::/32", or a bare address (a host prefix).
  // Rejects bad addresses or lengths, host bits set after the length (the
  // message suggests the canonical prefix) and prefixes inside the
  // IPv4-mapped range (the message suggests the IPv4 form).
  static Result<IpPrefix> parse(std::string_view text);
  // The same checks as parse().
  static Result<IpPrefix> make(const IpAddress& address, int length);

  const IpAddress& address() const { return address_; }
  int length() const { return length_; }
  Family family() const { return address_.family(); }
  bool is_host() const { return length_ == address_.max_prefix_length(); }
  bool contains(const IpAddress& a) const;
  std::string to_string() const;  // always "address/length"

  auto operator<=>(const IpPrefix&) const = default;
  bool operator==(const IpPrefix&) const = default;

 private:
  // The checks behind parse() and make(); errors quote `text`, the input as
  // written (empty: address/length).
  static Result<IpPrefix> checked(const IpAddress& address, int length, std::string_view text);

  IpAddress address_;
  int length_ = 0;
};

}  // namespace sebpf::net
