// An attachment's DNS endpoint as the proxy's loops share it: its sockets
// (bound here, in the workload's network namespace if it has one), the
// limits all loops draw on, and each loop's counts.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/token_bucket.h"
#include "common/unique_fd.h"
#include "dns/inherited_sockets.h"
#include "dns/proxy.h"
#include "dns/upstream_budget.h"
#include "net/socket_address.h"

namespace sebpf::dns {

// What EndpointCounters counts, as indexes into a loop's slot.
enum class Count : uint8_t {
  kQueries,
  kRefused,
  kForwarded,
  kAnswered,
  kServfail,
  kMalformed,
  kRateLimited,
  kAnswerAddresses,
  kCount,
};

// One loop's counts for one endpoint. Each loop writes only its own slot,
// a cache line from the others', so counting costs a plain add (no locked
// instruction, no line moving between CPUs); counters() sums the slots.
struct alignas(64) CountSlot {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Count::kCount)> values{};

  void add(Count c, uint64_t n) {
    std::atomic<uint64_t>& v = values[static_cast<size_t>(c)];
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get(Count c) const {
    return values[static_cast<size_t>(c)].load(std::memory_order_relaxed);
  }
};

// Out of descriptors, accept fails and leaves the connection queued: the
// listener stays ready and a loop would spin on it. The spare descriptor
// makes room to take the connection and close it at once. Every accept of
// every loop goes through the mutex: another loop's accept could take the
// slot the spare frees, and the spare would be lost.
struct AcceptGate {
  std::mutex mu;
  UniqueFd spare;
};

// One attachment's endpoint: its sockets, served by every loop, the limits
// the loops share, and their counts.
struct Endpoint {
  uint64_t attachment = 0;
  // A UDP and a TCP socket for each address, in the same order.
  std::vector<net::SocketAddress> addresses;
  uint32_t device_ifindex = 0;  // as EndpointSpec's
  // The network namespace its sockets are in: a move to another (a cgroup's
  // workload that turned out to send from one of its own) binds new ones.
  uint64_t netns_cookie = 0;
  std::vector<UniqueFd> udp, tcp;
  std::atomic<uint32_t> inflight{0};
  std::atomic<uint32_t> tcp_clients{0};
  std::mutex bucket_mu;                  // guards qps
  TokenBucket qps;                       // ProxyConfig::max_qps, a second of burst
  UpstreamBudget::Share upstream_share;  // its part of ProxyConfig::max_upstream_qps
  // One per loop; shared with the endpoint it moved from (move_endpoint),
  // whose loops may still count into it until they let go of it.
  std::shared_ptr<CountSlot[]> counts;
};

// Queries the kernel dropped at the endpoint's UDP sockets before they
// were read (a buffer full: ProxyConfig::receive_buffer_bytes; or, for a
// VM, the socket filter refusing another guest of its bridge), since the
// sockets were made: through reloads and restarts under systemd, which
// hand them on, and so the drops while no process read them too.
uint64_t dropped_unread(const Endpoint& endpoint);

// A second descriptor of the same socket (close-on-exec).
Result<UniqueFd> duplicate_socket(const UniqueFd& fd);

// Binds the endpoint's sockets (in the workload's network namespace when
// spec.netns_fd is set), taking over those of `kept` (an endpoint it moves
// from) for the addresses both have, if bound to the same device in the
// same network namespace, and else those of `inherited` (handed over by the process before) that
// are the same socket. An address the namespace does not have (::1 where IPv6 is turned off, as
// container runtimes often do) is skipped and named in `skipped`; none at
// all is an error.
Result<std::shared_ptr<Endpoint>> bind_endpoint(const EndpointSpec& spec, const Endpoint* kept,
                                                InheritedSockets* inherited,
                                                uint32_t receive_buffer_bytes,
                                                std::vector<std::string>& skipped);

}  // namespace sebpf::dns
