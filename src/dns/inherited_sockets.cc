#include "dns/inherited_sockets.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "net/socket_options.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; older libc headers lack it
#endif

namespace sebpf::dns {
namespace {

Result<uint64_t> netns_cookie_of(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    return Error::from_errno(errno, "read the socket's network namespace (SO_NETNS_COOKIE)");
  }
  return cookie;
}

}  // namespace

Result<SocketIdentity> identify_socket(int fd) {
  SocketIdentity id;
  SEBPF_ASSIGN_OR_RETURN(id.type, net::int_socket_option(fd, SO_TYPE, "read the socket's type"));
  if (id.type != SOCK_DGRAM && id.type != SOCK_STREAM) {
    return Error(Errc::kInvalidArgument, "neither a UDP nor a TCP socket");
  }
  if (id.type == SOCK_STREAM) {
    SEBPF_ASSIGN_OR_RETURN(
        const int listening,
        net::int_socket_option(fd, SO_ACCEPTCONN, "read whether the socket listens"));
    if (listening == 0) return Error(Errc::kInvalidArgument, "a TCP socket that does not listen");
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Error::from_errno(errno, "read the socket's address");
  }
  SEBPF_ASSIGN_OR_RETURN(id.address, net::SocketAddress::from_sockaddr(ss, len));
  if (id.address.port() == 0) return Error(Errc::kInvalidArgument, "a socket that is not bound");
  SEBPF_ASSIGN_OR_RETURN(const int device,
                         net::int_socket_option(fd, SO_BINDTOIFINDEX, "read the socket's device"));
  id.device_ifindex = static_cast<uint32_t>(device);
  SEBPF_ASSIGN_OR_RETURN(id.netns_cookie, netns_cookie_of(fd));
  return id;
}

Result<uint64_t> current_netns_cookie() {
  UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!probe) return Error::from_errno(errno, "socket");
  return netns_cookie_of(probe.get());
}

InheritedSockets::InheritedSockets(std::vector<UniqueFd> fds, std::vector<std::string>& rejected) {
  for (UniqueFd& fd : fds) {
    auto identity = identify_socket(fd.get());
    if (!identity.ok()) {
      rejected.push_back("descriptor " + std::to_string(fd.get()) + ": " +
                         identity.error().message());
      continue;  // closed with `fds`
    }
    held_.push_back({*identity, std::move(fd)});
  }
}

UniqueFd InheritedSockets::take(const SocketIdentity& identity) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&](const Held& h) { return h.identity == identity; });
  if (it == held_.end()) return UniqueFd();
  UniqueFd fd = std::move(it->fd);
  held_.erase(it);
  return fd;
}

size_t InheritedSockets::close_unclaimed() {
  std::lock_guard lock(mu_);
  const size_t n = held_.size();
  held_.clear();
  return n;
}

size_t InheritedSockets::size() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

}  // namespace sebpf::dns
