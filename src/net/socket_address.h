// An IP address with a port, as the socket calls want it, and the way
// users write one ("192.0.2.1:53", "[2001:db8::1]:53", or an address alone
// with a default port).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "net/ip_prefix.h"

namespace sebpf::net {

class SocketAddress {
 public:
  SocketAddress() = default;
  SocketAddress(const IpAddress& address, uint16_t port);
  // From what recvfrom/accept filled in; kInvalidArgument for a family
  // other than IPv4/IPv6.
  static Result<SocketAddress> from_sockaddr(const sockaddr_storage& storage, socklen_t length);
  // "addr", "addr:port" (IPv4), "[addr]:port" (IPv6); port from 1 to 65535.
  static Result<SocketAddress> parse(std::string_view text, uint16_t default_port);

  const IpAddress& address() const { return address_; }
  uint16_t port() const { return port_; }
  int family() const { return address_.family() == Family::kIPv4 ? AF_INET : AF_INET6; }
  // The sockaddr_in / sockaddr_in6 image and its length.
  socklen_t to_sockaddr(sockaddr_storage& out) const;
  std::string to_string() const;  // "192.0.2.1:53", "[2001:db8::1]:53"

  bool operator==(const SocketAddress&) const = default;

 private:
  IpAddress address_ = IpAddress::v4(0);
  uint16_t port_ = 0;
};

}  // namespace sebpf::net
