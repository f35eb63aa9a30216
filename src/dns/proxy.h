// The per-attachment DNS endpoints: one UDP and one TCP socket per address
// of each attachment's endpoint, all served by a few event-loop threads
// (ProxyConfig::threads), each of which takes whatever arrives while it is
// idle.
//
// A query is judged by the attachment's DNS mode and domain rules before
// anything leaves the host (a query can carry data out). An allowed one is
// forwarded to the upstream resolvers (failover in order; none answering is
// SERVFAIL). Every A/AAAA address on the answer's CNAME chain goes into the
// attachment's allow rules (ProxyBackend::learn) and only once the kernel
// holds them is the answer released; if they cannot be written the client
// gets SERVFAIL, never the answer. There is no timeout after which an
// answer is released anyway.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "dns/answer_addresses.h"
#include "dns/endpoint_counters.h"
#include "dns/message.h"
#include "dns/name_policy.h"
#include "net/socket_address.h"

namespace sebpf::dns {

struct ProxyConfig {
  std::vector<net::SocketAddress> upstreams;  // asked in order
  std::chrono::milliseconds upstream_timeout{1500};
  // Learned addresses live at least min_ttl and at most max_ttl seconds;
  // answers' TTLs are lowered to max_ttl so clients re-ask in time.
  uint32_t min_ttl = 30;
  uint32_t max_ttl = 3600;
  uint16_t refusal_rcode = rcode::kNxDomain;  // or kRefused
  // Per endpoint: queries waiting for an upstream, queries per second
  // (token bucket, one second of burst; 0 = unlimited), TCP clients.
  uint32_t max_inflight = 512;
  uint32_t max_qps = 5000;
  uint32_t max_tcp_clients = 64;
  // Per endpoint UDP socket: the receive buffer (SO_RCVBUFFORCE, as the
  // kernel counts it: about 830 bytes a query), which holds the queries
  // not read yet: while the endpoint is at max_inflight, during a reload,
  // or a restart under systemd's file descriptor store. 0: as the kernel
  // makes a socket (net.core.rmem_default, ~250 queries).
  uint32_t receive_buffer_bytes = 0;
  // Queries a second to the upstreams from every endpoint together (each
  // attempt), shared fairly among them (UpstreamBudget); over it a query is
  // answered SERVFAIL. 0 = unlimited.
  uint32_t max_upstream_qps = 0;
  std::chrono::seconds tcp_idle_timeout{10};
  // How long after its last send a loop with a few UDP queries in flight
  // polls for their answers before it sleeps; polls that keep seeing
  // nothing (a slow upstream) soon stop, and a loop polls for at most a
  // sixteenth of the time it has slept (a busy one hardly at all). 0 never
  // polls. Trades CPU time for the wake-up an answer would cost.
  std::chrono::microseconds answer_spin{50};
  // Event-loop threads serving every endpoint; at least 1.
  unsigned threads = 1;
};

enum class LearnOutcome : uint8_t {
  kHeld,           // the kernel holds every address
  kPolicyChanged,  // nothing written: a policy changed after the answers were judged
};

// What the proxy asks of the daemon. Called on the proxy's threads, so
// concurrently when it has more than one.
class ProxyBackend {
 public:
  virtual ~ProxyBackend() = default;
  // The attachment's DNS mode and domain rules; null when it is gone. A
  // policy never changes: a changed one is a new object.
  virtual std::shared_ptr<const NamePolicy> name_policy(uint64_t attachment) = 0;
  // Moves on (after the change is visible to name_policy) whenever any
  // attachment's policy changes or goes away. The loops keep the policies
  // they fetched for as long as it stays put: no lock and no shared
  // reference count per query.
  virtual uint64_t policy_generation() const = 0;
  // Puts the addresses (TTLs already clamped) into the attachment's allow
  // rules; returns once the kernel holds them. `judged_at` is the
  // policy_generation() whose policies judged the answers: if a policy
  // changed since, nothing is written (kPolicyChanged) and the caller must
  // judge the answers again. Otherwise a change made after the revocation
  // pass of a new domain rule had run could not take back what this
  // writes.
  virtual Result<LearnOutcome> learn(uint64_t attachment, std::span<const LearnedAddress> addresses,
                                     uint64_t judged_at) = 0;
  // Something worth a log line (an upstream failing, a write refused), of
  // `attachment`'s queries, or 0 when it is no one attachment's.
  virtual void report(std::string_view event, uint64_t attachment, std::string_view detail) = 0;
  // The sockets that serve the attachment's endpoint from now on (it
  // opened, or moved to other addresses); none once close_endpoint() closed
  // it. Not called when the proxy itself ends: its endpoints are then
  // handed on or left to the next process. Called in order, with the
  // proxy's lock held: it must not call the proxy.
  virtual void endpoint_sockets(uint64_t attachment, std::span<const int> fds) = 0;
};

struct EndpointSpec {
  uint64_t attachment = 0;
  std::vector<net::SocketAddress> addresses;  // each gets a UDP and a TCP socket
  // When set, the sockets take only what arrives through the interface of
  // this index (SO_BINDTOIFINDEX; by index, so that a renamed interface is
  // still the one): another VM routed to this address is not served.
  uint32_t device_ifindex = 0;
  // When set, a BPF socket filter every socket carries (SO_ATTACH_BPF):
  // for a VM, the datapath's, which leaves out the bridge's other guests.
  // An endpoint's filter never changes: a move keeps sockets with theirs.
  int socket_filter_fd = -1;
  // When set, the network namespace (an open /proc/<pid>/ns/net) the
  // sockets are made in: a container's own, whose loopback is where its
  // DNS is steered. Only read during open_endpoint.
  int netns_fd = -1;
};

struct Endpoint;    // an attachment's sockets, limits and counters (proxy_endpoint.h)
struct AcceptGate;  // the loops' spare descriptor (proxy_endpoint.h)
class UpstreamBudget;
class InheritedSockets;

class DnsProxy {
 public:
  // `inherited`: endpoint sockets the process before handed over (a
  // reload); an endpoint opened on one's address serves it, not a new one.
  static Result<std::unique_ptr<DnsProxy>> start(const ProxyConfig& config, ProxyBackend& backend,
                                                 std::unique_ptr<InheritedSockets> inherited = {});
  ~DnsProxy();  // stops the thread, closes every socket
  DnsProxy(const DnsProxy&) = delete;
  DnsProxy& operator=(const DnsProxy&) = delete;

  // Binds the endpoint's sockets now (errors such as a port in use come
  // back here); the loops serve them from their next turn. One endpoint per
  // attachment (a second is Errc::kAlreadyExists). None of these calls
  // waits for the loops' threads, so callers may hold locks the backend
  // takes.
  Status open_endpoint(const EndpointSpec& spec);
  // Serves the attachment's endpoint on spec's addresses from now on (a
  // VM's interface readdressed, or enslaved to a bridge). The sockets of
  // addresses it keeps on the same device stay: binding them again would
  // race the old endpoint's closing, and TCP clients and queries in flight
  // that came in on those go on; the others are dropped (their clients ask
  // again). The counts go on. With no endpoint open, the same as
  // open_endpoint.
  Status move_endpoint(const EndpointSpec& spec);
  // Stops serving and closes the sockets on the loop's next turn; queries
  // in flight are dropped.
  void close_endpoint(uint64_t attachment);

  // The endpoint's counters, summed over the loops; nullopt when the
  // attachment has no endpoint. An answer is counted before it is sent.
  std::optional<EndpointCounters> counters(uint64_t attachment) const;
  // The addresses the attachment's endpoint is served on: fewer than it
  // was asked for when some were skipped (bind_endpoint); none when it has
  // no endpoint.
  std::vector<net::SocketAddress> served_addresses(uint64_t attachment) const;

  // Closes the inherited sockets no endpoint took (their attachments are
  // gone); returns how many.
  size_t close_unclaimed_sockets();
  // A descriptor of each socket of every open endpoint (close-on-exec: the
  // caller clears it on those it hands over).
  Result<std::vector<UniqueFd>> duplicate_endpoint_sockets() const;
  // The loops take no new query (the endpoints' sockets keep them queued)
  // and answer those they took, the answers learned as ever; then their
  // threads end. Waits as long as a query may wait for its upstreams (each
  // one's timeout); returns whether every query was answered by then.
  bool drain();

  class Loop;

 private:
  DnsProxy(const ProxyConfig& config, ProxyBackend& backend);
  // An endpoint's sockets (bind_endpoint, taking over those of
  // `kept`), its addresses skipped reported, its rate limit full.
  Result<std::shared_ptr<Endpoint>> bind(const EndpointSpec& spec, const Endpoint* kept);
  // Tells the backend which sockets serve the endpoint now. With mu_ held.
  void report_sockets(const Endpoint& endpoint);

  const ProxyConfig config_;
  ProxyBackend& backend_;
  std::unique_ptr<InheritedSockets> inherited_;      // null: none handed over
  std::unique_ptr<AcceptGate> accept_gate_;          // outlives the loops, which use it
  std::unique_ptr<UpstreamBudget> upstream_budget_;  // as accept_gate_; null: no limit
  std::vector<std::unique_ptr<Loop>> loops_;
  mutable std::mutex mu_;  // open_, and the order of posts to the loops
  std::unordered_map<uint64_t, std::shared_ptr<Endpoint>> open_;  // by attachment
};

}  // namespace sebpf::dns
