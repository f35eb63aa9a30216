#include "net/socket_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sebpf::net {

SocketAddress::SocketAddress(const IpAddress& address, uint16_t port)
    : address_(address), port_(port) {}

Result<SocketAddress> SocketAddress::from_sockaddr(const sockaddr_storage& storage,
                                                   socklen_t length) {
  if (storage.ss_family == AF_INET && length >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, &storage, sizeof in);
    return SocketAddress(IpAddress::v4(in.sin_addr.s_addr), ntohs(in.sin_port));
  }
  if (storage.ss_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, &storage, sizeof in6);
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &in6.sin6_addr, 16);
    return SocketAddress(IpAddress::v6(bytes), ntohs(in6.sin6_port));
  }
  return Error(Errc::kInvalidArgument, "socket address of family " +
                                           std::to_string(storage.ss_family) +
                                           " is neither IPv4 nor IPv6");
}

Result<SocketAddress> SocketAddress::parse(std::string_view text, uint16_t default_port) {
  const auto bad = [&](const std::string& why) {
    return Error(Errc::kInvalidArgument, "\"" + std::string(text) + "\" is not an address with " +
                                             "an optional port: " + why);
  };
  std::string_view host = text;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']'");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':' after ']'");
      port_text = rest.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const size_t colon = text.find(':');
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (port_text.empty()) return bad("empty port");
  }
  auto address = IpAddress::parse(host);
  if (!address.ok()) return bad(address.error().message());
  uint16_t port = default_port;
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      return bad("the port must be a number from 1 to 65535");
    }
    port = static_cast<uint16_t>(value);
  }
  return SocketAddress(*address, port);
}

socklen_t SocketAddress::to_sockaddr(sockaddr_storage& out) const {
  std::memset(&out, 0, sizeof out);
  if (address_.family() == Family::kIPv4) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port_);
    in.sin_addr.s_addr = address_.v4_network_order();
    std::memcpy(&out, &in, sizeof in);
    return sizeof in;
  }
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port_);
  std::memcpy(&in6.sin6_addr, address_.bytes().data(), 16);
  std::memcpy(&out, &in6, sizeof in6);
  return sizeof in6;
}

std::string SocketAddress::to_string() const {
  if (address_.family() == Family::kIPv4) {
    return address_.to_string() + ":" + std::to_string(port_);
  }
  return "[" + address_.to_string() + "]:" + std::to_string(port_);
}

}  // namespace sebpf::net
