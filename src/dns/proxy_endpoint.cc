#include "dns/proxy_endpoint.h"

#include <fcntl.h>
#include <linux/sock_diag.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "common/in_namespace.h"
#include "net/socket_options.h"

namespace sebpf::dns {
namespace {

// Spec's socket filter on the socket, or none: a socket handed over by
// the process before carries that process's, which this one replaces.
Status put_filter(int fd, const net::SocketAddress& address, const EndpointSpec& spec) {
  if (spec.socket_filter_fd >= 0) {
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &spec.socket_filter_fd,
                   sizeof spec.socket_filter_fd) != 0) {
      return Error::from_errno(errno,
                               "put the socket filter on DNS endpoint " + address.to_string());
    }
  } else if (const int unused = 0;
             setsockopt(fd, SOL_SOCKET, SO_DETACH_BPF, &unused, sizeof unused) != 0 &&
             errno != ENOENT) {
    return Error::from_errno(errno,
                             "take the socket filter off DNS endpoint " + address.to_string());
  }
  return ok_status();
}

// One endpoint socket bound to `address` (and to spec's device and filter,
// if set). The filter goes on before the bind, so no datagram is queued
// unfiltered; a TCP socket's connections inherit it. IPV6_V6ONLY so that
// "::" never also takes IPv4. SO_REUSEADDR on TCP alone, so a restarted
// daemon can bind its TCP port while old connections linger in TIME_WAIT
// (no listening socket shares a port with it). On UDP it would let any
// process that sets it too bind the same port and take the queries: Linux
// gives the newest socket sharing a port its datagrams.
Result<UniqueFd> bind_socket(const net::SocketAddress& address, int type,
                             const EndpointSpec& spec) {
  UniqueFd fd(::socket(address.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "socket");
  const int index = static_cast<int>(spec.device_ifindex);
  if (spec.device_ifindex != 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_BINDTOIFINDEX, &index, sizeof index) != 0) {
    return Error::from_errno(
        errno, "bind DNS endpoint to interface " + std::to_string(spec.device_ifindex));
  }
  if (spec.socket_filter_fd >= 0) SEBPF_RETURN_IF_ERROR(put_filter(fd.get(), address, spec));
  const int one = 1;
  if (type == SOCK_STREAM) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (address.family() == AF_INET6) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  sockaddr_storage ss;
  const socklen_t len = address.to_sockaddr(ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const Errc code = errno == EADDRINUSE      ? Errc::kAlreadyExists
                      : errno == EADDRNOTAVAIL ? Errc::kNotFound
                                               : Errc::kFailedPrecondition;
    return Error(code, "bind DNS endpoint " + address.to_string() +
                           (type == SOCK_STREAM ? "/tcp" : "/udp") + ": " + errno_text(errno));
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), 128) != 0)
    return Error::from_errno(errno, "listen");
  return fd;
}

// The receive buffer of a UDP socket, bound or taken over (a reload with a
// new setting applies it), before its first datagram is read. FORCE: past
// net.core.rmem_max, which would cap it; a process without CAP_NET_ADMIN
// gets what rmem_max allows, and an error if that is less.
Status size_receive_buffer(int fd, const net::SocketAddress& address, uint32_t bytes) {
  if (bytes == 0) return ok_status();
  const int half = static_cast<int>(bytes / 2);  // the kernel doubles what it is given
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &half, sizeof half) == 0) return ok_status();
  const std::string what = "size the receive buffer of DNS endpoint " + address.to_string() +
                           " (dns.receive_buffer_bytes)";
  if (errno != EPERM) return Error::from_errno(errno, what);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &half, sizeof half) != 0) {
    return Error::from_errno(errno, what);
  }
  SEBPF_ASSIGN_OR_RETURN(const int got, net::int_socket_option(fd, SO_RCVBUF, what));
  if (static_cast<uint32_t>(got) < bytes) {
    return Error(Errc::kPermissionDenied, what + ": past net.core.rmem_max (" +
                                              std::to_string(got) +
                                              " bytes), which takes CAP_NET_ADMIN");
  }
  return ok_status();
}

// Datagrams the kernel dropped at a socket, its buffer full or its filter
// refusing them, since the socket was made (sk_drops, a 32-bit count).
uint32_t socket_drops(int fd) {
  std::array<uint32_t, SK_MEMINFO_VARS> meminfo{};
  socklen_t length = sizeof meminfo;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo.data(), &length) != 0 ||
      length <= SK_MEMINFO_DROPS * sizeof(uint32_t)) {
    return 0;
  }
  return meminfo[SK_MEMINFO_DROPS];
}

}  // namespace

uint64_t dropped_unread(const Endpoint& endpoint) {
  uint64_t dropped = 0;
  for (const UniqueFd& fd : endpoint.udp) dropped += socket_drops(fd.get());
  return dropped;
}

Result<UniqueFd> duplicate_socket(const UniqueFd& fd) {
  UniqueFd copy(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return Error::from_errno(errno, "duplicate a DNS endpoint socket");
  return copy;
}

Result<std::shared_ptr<Endpoint>> bind_endpoint(const EndpointSpec& spec, const Endpoint* kept,
                                                InheritedSockets* inherited,
                                                uint32_t receive_buffer_bytes,
                                                std::vector<std::string>& skipped) {
  auto endpoint = std::make_shared<Endpoint>();
  endpoint->attachment = spec.attachment;
  endpoint->device_ifindex = spec.device_ifindex;
  const auto bind_all = [&]() -> Status {
    // Run in the namespace the sockets belong to: its cookie tells a
    // handed-over socket of this endpoint, or one of the endpoint it moves
    // from, from one of another namespace on the same address and port.
    SEBPF_ASSIGN_OR_RETURN(endpoint->netns_cookie, current_netns_cookie());
    const auto take_or_bind = [&](const net::SocketAddress& address, int type) -> Result<UniqueFd> {
      UniqueFd fd;
      if (inherited != nullptr && inherited->size() > 0) {
        fd = inherited->take({endpoint->netns_cookie, type, address, spec.device_ifindex});
        if (fd) SEBPF_RETURN_IF_ERROR(put_filter(fd.get(), address, spec));
      }
      if (!fd) {
        SEBPF_ASSIGN_OR_RETURN(fd, bind_socket(address, type, spec));
      }
      if (type == SOCK_DGRAM) {
        SEBPF_RETURN_IF_ERROR(size_receive_buffer(fd.get(), address, receive_buffer_bytes));
      }
      return fd;
    };
    for (const net::SocketAddress& address : spec.addresses) {
      if (kept != nullptr && kept->device_ifindex == spec.device_ifindex &&
          kept->netns_cookie == endpoint->netns_cookie) {
        const auto same = std::find(kept->addresses.begin(), kept->addresses.end(), address);
        if (same != kept->addresses.end()) {
          const size_t i = static_cast<size_t>(same - kept->addresses.begin());
          SEBPF_ASSIGN_OR_RETURN(UniqueFd udp, duplicate_socket(kept->udp[i]));
          SEBPF_ASSIGN_OR_RETURN(UniqueFd tcp, duplicate_socket(kept->tcp[i]));
          endpoint->addresses.push_back(address);
          endpoint->udp.push_back(std::move(udp));
          endpoint->tcp.push_back(std::move(tcp));
          continue;
        }
      }
      auto udp = take_or_bind(address, SOCK_DGRAM);
      if (!udp.ok() && udp.error().code() == Errc::kNotFound) {
        skipped.push_back(udp.error().message());
        continue;
      }
      if (!udp.ok()) return udp.error();
      SEBPF_ASSIGN_OR_RETURN(UniqueFd tcp, take_or_bind(address, SOCK_STREAM));
      endpoint->addresses.push_back(address);
      endpoint->udp.push_back(std::move(*udp));
      endpoint->tcp.push_back(std::move(tcp));
    }
    if (endpoint->udp.empty() && !skipped.empty()) {
      return Error(Errc::kFailedPrecondition, skipped.front());
    }
    return ok_status();
  };
  // A socket belongs to the namespace it was made in.
  SEBPF_RETURN_IF_ERROR(in_namespace<Status>(spec.netns_fd, CLONE_NEWNET,
                                             "the workload's network namespace", bind_all));
  return endpoint;
}

}  // namespace sebpf::dns
