// DNS endpoint sockets a daemon hands to the process that replaces it (a
// reload re-executes the daemon): the replacement serves each endpoint on
// the socket the old one served, so the port never closes. Queries that
// arrive in between wait in the socket's queue, not at a closed port.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "net/socket_address.h"

namespace sebpf::dns {

// What identifies an endpoint socket: a socket of another namespace, type,
// address or device serves another endpoint.
struct SocketIdentity {
  uint64_t netns_cookie = 0;  // SO_NETNS_COOKIE
  int type = 0;               // SOCK_DGRAM or SOCK_STREAM (a listener)
  net::SocketAddress address;
  uint32_t device_ifindex = 0;  // SO_BINDTOIFINDEX; 0: any
  bool operator==(const SocketIdentity&) const = default;
};

// The socket's identity; an error if it is not a bound UDP socket or a
// listening TCP socket.
Result<SocketIdentity> identify_socket(int fd);

// The cookie of the calling thread's network namespace.
Result<uint64_t> current_netns_cookie();

// The sockets a process was handed, until its endpoints claim them. Safe
// to use from several threads (endpoints are bound on a thread of their
// own when they are in a workload's namespace).
class InheritedSockets {
 public:
  // Each descriptor is identified and kept, or closed with the reason in
  // `rejected` (not a socket of an endpoint: nothing should serve it).
  InheritedSockets(std::vector<UniqueFd> fds, std::vector<std::string>& rejected);

  // The socket with this identity, taken out; an invalid fd when there is
  // none.
  UniqueFd take(const SocketIdentity& identity);
  // Closes those no endpoint took; returns how many.
  size_t close_unclaimed();
  size_t size() const;

 private:
  struct Held {
    SocketIdentity identity;
    UniqueFd fd;
  };
  mutable std::mutex mu_;
  std::vector<Held> held_;
};

}  // namespace sebpf::dns
