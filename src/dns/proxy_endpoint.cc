#include "dns/proxy_endpoint.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <thread>

namespace sebpf::dns {
namespace {

// One endpoint socket bound to `address` (and to spec's device and filter,
// if set). The filter goes on before the bind, so no datagram is queued
// unfiltered; a TCP socket's connections inherit it. IPV6_V6ONLY so that
// "::" never also takes IPv4; SO_REUSEADDR so a restarted daemon can bind
// its TCP port while old connections linger in TIME_WAIT.
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
  if (spec.socket_filter_fd >= 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_BPF, &spec.socket_filter_fd,
                 sizeof spec.socket_filter_fd) != 0) {
    return Error::from_errno(errno, "put the socket filter on DNS endpoint " + address.to_string());
  }
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
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

// A second descriptor of the same socket.
Result<UniqueFd> duplicate(const UniqueFd& fd) {
  UniqueFd copy(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return Error::from_errno(errno, "duplicate a DNS endpoint socket");
  return copy;
}

}  // namespace

Result<std::shared_ptr<Endpoint>> bind_endpoint(const EndpointSpec& spec, const Endpoint* kept,
                                                std::vector<std::string>& skipped) {
  auto endpoint = std::make_shared<Endpoint>();
  endpoint->attachment = spec.attachment;
  endpoint->device_ifindex = spec.device_ifindex;
  const auto bind_all = [&]() -> Status {
    for (const net::SocketAddress& address : spec.addresses) {
      if (kept != nullptr && kept->device_ifindex == spec.device_ifindex) {
        const auto same = std::find(kept->addresses.begin(), kept->addresses.end(), address);
        if (same != kept->addresses.end()) {
          const size_t i = static_cast<size_t>(same - kept->addresses.begin());
          SEBPF_ASSIGN_OR_RETURN(UniqueFd udp, duplicate(kept->udp[i]));
          SEBPF_ASSIGN_OR_RETURN(UniqueFd tcp, duplicate(kept->tcp[i]));
          endpoint->addresses.push_back(address);
          endpoint->udp.push_back(std::move(udp));
          endpoint->tcp.push_back(std::move(tcp));
          continue;
        }
      }
      auto udp = bind_socket(address, SOCK_DGRAM, spec);
      if (!udp.ok() && udp.error().code() == Errc::kNotFound) {
        skipped.push_back(udp.error().message());
        continue;
      }
      if (!udp.ok()) return udp.error();
      SEBPF_ASSIGN_OR_RETURN(UniqueFd tcp, bind_socket(address, SOCK_STREAM, spec));
      endpoint->addresses.push_back(address);
      endpoint->udp.push_back(std::move(*udp));
      endpoint->tcp.push_back(std::move(tcp));
    }
    if (endpoint->udp.empty() && !skipped.empty()) {
      return Error(Errc::kFailedPrecondition, skipped.front());
    }
    return ok_status();
  };
  if (spec.netns_fd < 0) {
    SEBPF_RETURN_IF_ERROR(bind_all());
  } else {
    // A socket belongs to the namespace it was made in; setns() changes
    // only the calling thread's, so a short-lived thread makes them.
    Status made = ok_status();
    std::thread([&] {
      if (setns(spec.netns_fd, CLONE_NEWNET) != 0) {
        made = Error::from_errno(errno, "enter the workload's network namespace");
        return;
      }
      made = bind_all();
    }).join();
    SEBPF_RETURN_IF_ERROR(made);
  }
  return endpoint;
}

}  // namespace sebpf::dns
