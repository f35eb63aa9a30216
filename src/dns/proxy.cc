#include "dns/proxy.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>

#include "absl/container/flat_hash_map.h"
#include "common/token_bucket.h"
#include "common/unique_fd.h"
#include "dns/response.h"
#include "dns/upstream_budget.h"
#include "dns/upstream_query.h"

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

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxMessage = 65535;
// A TCP client may pipeline queries (RFC 7766). It is read from while it
// has fewer than kMaxTcpClientInflight queries waiting for their answers
// and fewer than kMaxTcpClientOutput bytes of answers it has not read yet;
// beyond that its further queries wait in its own socket, so a client that
// never reads cannot make the endpoint hold its answers without bound.
constexpr uint32_t kMaxTcpClientInflight = 32;
constexpr size_t kMaxTcpClientOutput = 64 * 1024;
// Datagrams move in batches: one recvmmsg/sendmmsg system call for up to
// kBatch of them (a system call per datagram was most of the endpoint's
// cost). At most kReadBurst are read per readiness event, so one busy
// socket cannot starve the others.
constexpr unsigned kBatch = 32;
constexpr int kReadBurst = 64;
// How long a loop leaves a listener alone when it can neither take a
// connection nor shed one (out of descriptors, the spare lost).
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
// UDP to an upstream goes over one connected socket per loop, carrying at
// most kQueriesPerSocket queries before a fresh one (a fresh random source
// port) takes its place: a socket per query cost five system calls per
// query; a socket for ever would let an off-path forger learn the port to
// aim at. An answer must match socket, id and question. One socket, not a
// few: a turn's queries to an upstream then go out in one sendmmsg and
// their answers come back through one recvmmsg; over four sockets the
// endpoint spent ~2 us more CPU per query at 60,000 queries/s
// (docs/benchmarks.md, session 21), and each open port is one more an
// off-path forger could hit.
constexpr uint32_t kQueriesPerSocket = 256;

Error errno_error(const std::string& what) {
  return Error(Errc::kInternal, what + ": " + errno_text(errno));
}

void put_id(std::span<uint8_t> wire, uint16_t id) {
  wire[0] = static_cast<uint8_t>(id >> 8);
  wire[1] = static_cast<uint8_t>(id);
}

// One endpoint socket bound to `address` (and to spec's device and filter,
// if set). The filter goes on before the bind, so no datagram is queued
// unfiltered; a TCP socket's connections inherit it. IPV6_V6ONLY so that
// "::" never also takes IPv4; SO_REUSEADDR so a restarted daemon can bind
// its TCP port while old connections linger in TIME_WAIT.
Result<UniqueFd> bind_socket(const net::SocketAddress& address, int type,
                             const EndpointSpec& spec) {
  UniqueFd fd(::socket(address.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  const int index = static_cast<int>(spec.device_ifindex);
  if (spec.device_ifindex != 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_BINDTOIFINDEX, &index, sizeof index) != 0) {
    return errno_error("bind DNS endpoint to interface " + std::to_string(spec.device_ifindex));
  }
  if (spec.socket_filter_fd >= 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_BPF, &spec.socket_filter_fd,
                 sizeof spec.socket_filter_fd) != 0) {
    return errno_error("put the socket filter on DNS endpoint " + address.to_string());
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
  if (type == SOCK_STREAM && ::listen(fd.get(), 128) != 0) return errno_error("listen");
  return fd;
}

// Buffers for reading up to kBatch datagrams with one recvmmsg. The
// messages are valid until the next receive().
class RecvBatch {
 public:
  // Not zeroed: only the bytes datagrams fill are ever touched.
  RecvBatch() : buffers_(std::make_unique_for_overwrite<uint8_t[]>(kBatch * kSlot)) {}

  // Datagrams read (0 when none is waiting), or -1 with errno set.
  int receive(int fd) {
    for (unsigned i = 0; i < kBatch; ++i) {
      iov_[i] = {&buffers_[i * kSlot], kMaxMessage};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &peers_[i];
      msgs_[i].msg_hdr.msg_namelen = sizeof peers_[i];
    }
    const int n = ::recvmmsg(fd, msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return n;
  }
  std::span<uint8_t> message(int i) {
    const auto k = static_cast<size_t>(i);
    return {&buffers_[k * kSlot], msgs_[k].msg_len};
  }
  // Cut short by the buffer (MSG_TRUNC): not the whole datagram.
  bool truncated(int i) const {
    return msgs_[static_cast<size_t>(i)].msg_hdr.msg_flags & MSG_TRUNC;
  }
  const sockaddr_storage& peer(int i) const { return peers_[static_cast<size_t>(i)]; }
  socklen_t peer_length(int i) const { return msgs_[static_cast<size_t>(i)].msg_hdr.msg_namelen; }

 private:
  // Each slot holds the largest datagram, but a DNS message fills only its
  // first few cache lines. Slots a power of two apart (64 KiB) put all
  // those lines in the same few cache sets, and a batch then evicts itself:
  // the endpoint spent ~25 % more CPU per query (measured against this
  // layout, both orders, bench/dns_bench.sh's setup). One cache line more
  // per slot spreads their starts over the sets.
  static constexpr size_t kSlot = 65536 + 64;
  std::unique_ptr<uint8_t[]> buffers_;
  std::array<mmsghdr, kBatch> msgs_{};
  std::array<iovec, kBatch> iov_{};
  std::array<sockaddr_storage, kBatch> peers_{};
};

}  // namespace

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

namespace {

// A second descriptor of the same socket.
Result<UniqueFd> duplicate(const UniqueFd& fd) {
  UniqueFd copy(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return errno_error("duplicate a DNS endpoint socket");
  return copy;
}

// Binds the endpoint's sockets (in the workload's network namespace when
// spec.netns_fd is set), taking over those of `kept` (an endpoint it
// moves from) for the addresses both have, if bound to the same device. An address the namespace
// does not have (::1 where IPv6 is turned off, as container runtimes often do) is skipped and named
// in `skipped`; none at all is an error.
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
        made = errno_error("enter the workload's network namespace");
        return;
      }
      made = bind_all();
    }).join();
    SEBPF_RETURN_IF_ERROR(made);
  }
  return endpoint;
}

// Where an answer goes back to.
struct ClientRef {
  bool tcp = false;
  int udp_fd = -1;  // the endpoint socket the query came in on
  net::SocketAddress peer;
  uint64_t tcp_client = 0;
};

// A query a loop took in and has not answered yet. Not nested in
// DnsProxy::Loop, where it would be incomplete too long for the loop's
// spare hash-table nodes of it.
struct Pending {
  uint64_t attachment = 0;
  ClientRef client;
  Query query;
  QueryVerdict verdict = QueryVerdict::kRefuse;  // as judged when the query came
  uint64_t policy_generation = 0;                // of the policy that judged it
  std::vector<uint8_t> wire;                     // as sent upstream (make_upstream_query)
  uint16_t upstream_id = 0;
  size_t upstream = 0;
  size_t attempts_left = 0;
  bool upstream_tcp = false;
  bool tcp_connected = false;
  UniqueFd upstream_fd;     // TCP
  uint64_t udp_socket = 0;  // UDP: serial of the shared socket; 0 = none
  std::vector<uint8_t> tcp_out, tcp_in;
  Clock::time_point deadline;
  std::string chain;  // encode_chain of the answer being learned
};

}  // namespace

// One event loop on a thread of its own. Every loop watches every
// endpoint's sockets (EPOLLEXCLUSIVE: a datagram or connection wakes one
// loop, an idle one if there is), and owns what it took in: the queries it
// read, its upstream sockets, the TCP clients it accepted.
class DnsProxy::Loop {
 public:
  Loop(const ProxyConfig& config, ProxyBackend& backend, AcceptGate& gate,
       UpstreamBudget* upstream_budget, size_t index)
      : config_(config),
        backend_(backend),
        gate_(gate),
        upstream_budget_(upstream_budget),
        index_(index) {}

  Status init() {
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return errno_error("epoll_create1");
    wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_) return errno_error("eventfd");
    SEBPF_RETURN_IF_ERROR(watch(wake_.get(), EPOLLIN, {Kind::kWake, 0}));
    thread_ = std::thread([this] { run(); });
    // Named, so that top -H, perf and the tests can tell the loops apart.
    pthread_setname_np(thread_.native_handle(), "sebpf-dns");
    return ok_status();
  }

  ~Loop() {
    if (!thread_.joinable()) return;
    post([this] { stopping_ = true; });
    thread_.join();
  }

  // Runs `task` on the loop's thread, later. Never waits: a caller may hold
  // a lock the loop's thread needs (the backend's), so waiting could
  // deadlock.
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(tasks_mu_);
      tasks_.push_back(std::move(task));
    }
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

  // Serves the endpoint from the loop's next turn.
  void open_endpoint(std::shared_ptr<Endpoint> endpoint) {
    post([this, endpoint = std::move(endpoint)]() mutable {
      const uint64_t attachment = endpoint->attachment;
      for (const auto* fds : {&endpoint->udp, &endpoint->tcp}) {
        const Kind kind = fds == &endpoint->udp ? Kind::kEndpointUdp : Kind::kEndpointTcp;
        for (const UniqueFd& fd : *fds) {
          if (auto s = watch(fd.get(), EPOLLIN | EPOLLEXCLUSIVE, {kind, attachment}); !s.ok()) {
            backend_.report("dns_endpoint_failed", attachment, s.error().message());
          }
        }
      }
      endpoints_[attachment] = std::move(endpoint);
    });
  }

  void close_endpoint(uint64_t attachment) {
    post([this, attachment] {
      auto it = endpoints_.find(attachment);
      if (it == endpoints_.end()) return;
      for (const auto* fds : {&it->second->udp, &it->second->tcp}) {
        for (const UniqueFd& fd : *fds) unwatch(fd.get());
      }
      // Let go of at the end of this turn (the sockets close when every
      // loop has): replies queued for its clients meanwhile must not go
      // out through a reused descriptor number.
      closing_.push_back(std::move(it->second));
      endpoints_.erase(it);
      for (auto c = clients_.begin(); c != clients_.end();) {
        if (c->second.attachment == attachment) {
          unwatch(c->second.fd.get());
          c = clients_.erase(c);
        } else {
          ++c;
        }
      }
      for (auto p = pending_.begin(); p != pending_.end();) {
        if (p->second.attachment == attachment) {
          leave_upstream(p->second);
          p = pending_.erase(p);
        } else {
          ++p;
        }
      }
    });
  }

 private:
  enum class Kind : uint8_t {
    kWake,
    kEndpointUdp,
    kEndpointTcp,
    kTcpClient,
    kUpstream,     // a query's own TCP connection (id: the query)
    kUpstreamUdp,  // a shared UDP socket (id: the socket's serial)
  };
  struct Ref {
    Kind kind;
    uint64_t id;  // attachment, client or pending query
  };

  struct TcpClient {
    UniqueFd fd;
    uint64_t attachment = 0;
    std::vector<uint8_t> in, out;
    uint32_t inflight = 0;   // forwarded queries whose answer is not in `out` yet
    bool sent_all = false;   // the client shut its sending side: closed once answered
    bool held_back = false;  // not read from: too much in flight or unread (serve_client)
    Clock::time_point idle_deadline;
  };

  using PendingTable = std::unordered_map<uint64_t, Pending>;
  // A query taken out of the table (finish) with its buffers: answered,
  // it goes back to spare_pending_ for a later query, so that a query
  // costs no allocation for its entry, its wire form or its chain.
  using PendingEntry = PendingTable::node_type;
  static constexpr size_t kSparePending = 256;
  // Buffers bigger than this are not kept for reuse: a rare large
  // message must not pin its memory.
  static constexpr size_t kKeptBufferSize = 4096;

  struct UpstreamSocket {
    UniqueFd fd;
    size_t upstream = 0;
    uint32_t uses = 0;
    uint32_t waiting = 0;  // queries whose answer may still come on it
    bool retired = false;  // replaced; closed once nothing waits on it
  };

  static uint64_t wait_key(uint64_t socket, uint16_t id) { return socket << 16 | id; }

  Status watch(int fd, uint32_t events, Ref ref) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl add");
    refs_[fd] = ref;
    return ok_status();
  }

  void rewatch(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
  }

  void unwatch(int fd) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    refs_.erase(fd);
  }

  void run() {
    std::vector<epoll_event> events(256);
    while (!stopping_) {
      const int timeout = next_timeout_ms();
      int n = timeout == 0 ? 0 : spin_for_answers(events);
      if (n == 0) {
        const Clock::time_point asleep = Clock::now();
        n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
        earn_spin(Clock::now() - asleep);
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<size_t>(i)].data.fd;
        const auto ref = refs_.find(fd);
        if (ref == refs_.end()) continue;  // closed by an earlier event of this batch
        dispatch(fd, ref->second, events[static_cast<size_t>(i)].events);
      }
      fire_timers();
      // Answers and writes make room for held-back TCP clients, whose
      // queries then go out in this turn's datagrams, whose failures may
      // answer more.
      do {
        learn_and_release();
        resume_clients();
        flush_datagrams();
      } while (!resume_.empty());
      closing_.clear();
    }
  }

  void dispatch(int fd, Ref ref, uint32_t events) {
    switch (ref.kind) {
      case Kind::kWake:
        run_tasks();
        break;
      case Kind::kEndpointUdp:
        read_udp_queries(fd, ref.id);
        break;
      case Kind::kEndpointTcp:
        accept_clients(fd, ref.id);
        break;
      case Kind::kTcpClient:
        client_ready(ref.id, events);
        break;
      case Kind::kUpstream:
        upstream_ready(ref.id, events);
        break;
      case Kind::kUpstreamUdp:
        upstream_udp_ready(ref.id);
        break;
    }
  }

  void run_tasks() {
    uint64_t value;
    (void)!::read(wake_.get(), &value, sizeof value);
    std::deque<std::function<void()>> tasks;
    {
      std::lock_guard lock(tasks_mu_);
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
  }

  // ---- waiting for answers ----
  // A thread woken from sleep starts late: on a virtual machine whose idle
  // vCPUs halt, each wake-up is a round trip through the hypervisor, and
  // with an upstream on the same host (a local caching resolver) that was
  // most of what the endpoint added to an answer's latency. So a loop with
  // a few UDP queries in flight polls for their answers until
  // config_.answer_spin after its last send, and only then sleeps.
  // - Polling is paid for with sleep: a loop polls for at most a
  //   kSpinShare-th of the time it has slept (banked up to kSpinBank
  //   polls' worth). A quiet loop, which sleeps most of the time, polls in
  //   full; a busy one hardly polls, as its CPU time is then wanted by the
  //   upstream and the clients whose work the answers wait for (polling
  //   whenever few queries were in flight read 3-11 points of dnsdist's
  //   throughput below no polling at all: docs/benchmarks.md, session 18).
  // - Polls that see nothing (upstreams slower than that: any resolver
  //   across a network) soon stop: after kSpinMisses of them in a row, a
  //   loop polls before one sleep in kSpinProbe, to notice when answers
  //   come quickly again.
  // - With more than kSpinMaxWaiting queries in flight the loop is busy
  //   and wakes for its next datagram soon anyway.
  static constexpr uint32_t kSpinMisses = 4;
  static constexpr uint32_t kSpinProbe = 16;
  static constexpr size_t kSpinMaxWaiting = 4;
  static constexpr int kSpinShare = 16;
  static constexpr int kSpinBank = 4;

  void earn_spin(Clock::duration slept) {
    spin_budget_ = std::min(spin_budget_ + slept / kSpinShare,
                            Clock::duration(config_.answer_spin * kSpinBank));
  }

  // Events that came while polling (their count), or 0: sleep.
  int spin_for_answers(std::span<epoll_event> events) {
    if (waiting_.empty() || waiting_.size() > kSpinMaxWaiting || config_.answer_spin.count() == 0 ||
        spin_budget_ <= Clock::duration::zero()) {
      return 0;
    }
    const Clock::time_point start = Clock::now();
    const Clock::time_point answers_due = queries_sent_at_ + config_.answer_spin;
    const Clock::time_point until = std::min(answers_due, start + spin_budget_);
    if (start >= until) return 0;
    if (spins_missed_ >= kSpinMisses && ++spins_skipped_ % kSpinProbe != 0) return 0;
    int n = 0;
    Clock::time_point now;
    do {
      n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 0);
      now = Clock::now();
    } while (n == 0 && now < until);
    spin_budget_ -= now - start;
    if (n > 0) {
      spins_missed_ = 0;
    } else if (until == answers_due) {  // not cut short by the budget: a slow upstream
      spins_missed_ = std::min(spins_missed_ + 1, kSpinMisses);
    }
    return std::max(n, 0);
  }

  // ---- timers ----
  // Every upstream wait has the same length, so deadlines are added in the
  // order they fall due: a queue, no sorting. An entry whose query has
  // since moved on (answered, re-sent) is stale: dropped before the loop
  // sleeps, so that it does not wake the loop for nothing. Most queries are
  // answered long before their deadline; waking for each one's stale entry
  // cost a wake-up per query at light load.
  //
  // A TCP client's idle deadline moves with every read and write: it has
  // one entry in a heap, moved on to its current deadline when it comes up
  // (an entry per move would pile up behind one idle client's).

  using Deadline = std::pair<Clock::time_point, uint64_t>;
  using ClientDeadlines =
      std::priority_queue<Deadline, std::vector<Deadline>, std::greater<Deadline>>;

  int next_timeout_ms() {
    while (!upstream_deadlines_.empty()) {
      const auto& [when, id] = upstream_deadlines_.front();
      const auto p = pending_.find(id);
      if (p != pending_.end() && p->second.deadline == when) break;
      upstream_deadlines_.pop_front();
    }
    while (!client_deadlines_.empty()) {
      const auto [when, id] = client_deadlines_.top();
      const auto c = clients_.find(id);
      if (c != clients_.end() && c->second.idle_deadline == when) break;
      client_deadlines_.pop();
      if (c != clients_.end()) client_deadlines_.emplace(c->second.idle_deadline, id);
    }
    std::optional<Clock::time_point> first;
    if (!upstream_deadlines_.empty()) first = upstream_deadlines_.front().first;
    if (!client_deadlines_.empty() && (!first || client_deadlines_.top().first < *first)) {
      first = client_deadlines_.top().first;
    }
    if (!paused_.empty() && (!first || paused_.front().until < *first)) {
      first = paused_.front().until;
    }
    if (!first) return -1;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*first - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
  }

  void fire_timers() {
    const auto now = Clock::now();
    resume_listeners(now);
    while (!upstream_deadlines_.empty() && upstream_deadlines_.front().first <= now) {
      const uint64_t id = upstream_deadlines_.front().second;
      upstream_deadlines_.pop_front();
      auto p = pending_.find(id);
      if (p != pending_.end() && p->second.deadline <= now) {
        backend_.report("dns_upstream_timeout", p->second.attachment,
                        config_.upstreams[p->second.upstream].to_string());
        next_upstream(id);
      }
    }
    while (!client_deadlines_.empty() && client_deadlines_.top().first <= now) {
      const uint64_t id = client_deadlines_.top().second;
      client_deadlines_.pop();
      auto c = clients_.find(id);
      if (c == clients_.end()) continue;
      if (c->second.idle_deadline <= now && c->second.inflight == 0) {
        close_client(id);
        continue;
      }
      // Still busy, or waiting for answers: not idle.
      if (c->second.idle_deadline <= now) c->second.idle_deadline = now + config_.tcp_idle_timeout;
      client_deadlines_.emplace(c->second.idle_deadline, id);
    }
  }

  // ---- clients ----

  bool take_token(Endpoint& ep) {
    if (config_.max_qps == 0) return true;
    std::lock_guard lock(ep.bucket_mu);
    ep.qps.refill(config_.max_qps, config_.max_qps, Clock::now());
    return ep.qps.take();
  }

  // Whether the host's upstream budget lets the endpoint send a query now
  // (a first attempt or a retry); taken from it if so.
  bool within_upstream_budget(Endpoint& ep) {
    return upstream_budget_ == nullptr || upstream_budget_->take(ep.upstream_share, Clock::now());
  }

  // This loop's counts of an endpoint.
  CountSlot& slot(Endpoint& endpoint) { return endpoint.counts[index_]; }
  void count(Endpoint& endpoint, Count c) { slot(endpoint).add(c, 1); }
  // By attachment: nothing is counted once its endpoint is closed.
  void count(uint64_t attachment, Count c) {
    if (auto ep = endpoints_.find(attachment); ep != endpoints_.end()) count(*ep->second, c);
  }

  void read_udp_queries(int fd, uint64_t attachment) {
    for (int read = 0; read < kReadBurst;) {
      const int n = recv_batch_.receive(fd);
      if (n <= 0) return;  // none waiting, or an error the next read reports again
      for (int i = 0; i < n; ++i) {
        auto peer =
            net::SocketAddress::from_sockaddr(recv_batch_.peer(i), recv_batch_.peer_length(i));
        if (!peer.ok()) continue;
        if (recv_batch_.truncated(i)) {  // over 64 KiB: no DNS message
          count(attachment, Count::kQueries);
          count(attachment, Count::kMalformed);
          continue;
        }
        ClientRef client{.tcp = false, .udp_fd = fd, .peer = *peer, .tcp_client = 0};
        handle_query(attachment, recv_batch_.message(i), client);
        if (!endpoints_.count(attachment)) return;
      }
      if (static_cast<unsigned>(n) < kBatch) return;
      read += n;
    }
  }

  void accept_clients(int listen_fd, uint64_t attachment) {
    auto ep = endpoints_.find(attachment);
    if (ep == endpoints_.end()) return;
    while (true) {
      UniqueFd fd;
      switch (accept_one(listen_fd, fd)) {
        case Accepted::kClient:
          break;
        case Accepted::kShed:
          count(*ep->second, Count::kRateLimited);
          backend_.report("dns_tcp_client_refused", attachment,
                          "out of file descriptors (RLIMIT_NOFILE)");
          continue;
        case Accepted::kOutOfDescriptors:
          pause_listener(listen_fd, attachment);
          return;
        case Accepted::kNone:
          return;
      }
      // Counted first, then checked: the loops share the count.
      if (ep->second->tcp_clients.fetch_add(1) >= config_.max_tcp_clients) {
        ep->second->tcp_clients--;
        count(*ep->second, Count::kRateLimited);
        continue;  // closed at once
      }
      const uint64_t id = next_id_++;
      const int raw = fd.get();
      TcpClient client;
      client.fd = std::move(fd);
      client.attachment = attachment;
      client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
      if (!watch(raw, EPOLLIN, {Kind::kTcpClient, id}).ok()) {
        ep->second->tcp_clients--;
        continue;
      }
      client_deadlines_.emplace(client.idle_deadline, id);
      clients_.emplace(id, std::move(client));
    }
  }

  enum class Accepted {
    kClient,            // in `fd`
    kShed,              // out of descriptors: taken with the spare's and closed
    kOutOfDescriptors,  // and no spare to shed with
    kNone,              // none waiting (or an error the next accept reports again)
  };

  Accepted accept_one(int listen_fd, UniqueFd& fd) {
    std::lock_guard lock(gate_.mu);
    fd.reset(::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    const int error = errno;
    // Taken again as soon as a descriptor is free: another thread of the
    // daemon may have taken the slot it left.
    if (!gate_.spare) gate_.spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (fd) return Accepted::kClient;
    if (error != EMFILE && error != ENFILE) return Accepted::kNone;
    if (!gate_.spare) return Accepted::kOutOfDescriptors;
    gate_.spare.reset();
    const bool shed = UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC)).valid();
    gate_.spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return shed ? Accepted::kShed : Accepted::kOutOfDescriptors;
  }

  // Neither taken nor shed, the connection stays queued and the listener
  // ready: this loop stops watching it for a while rather than spin.
  void pause_listener(int listen_fd, uint64_t attachment) {
    unwatch(listen_fd);
    paused_.push_back({Clock::now() + kAcceptPause, attachment, listen_fd});
    backend_.report("dns_tcp_accept_paused", attachment,
                    "out of file descriptors (RLIMIT_NOFILE), with none spare to refuse a client");
  }

  // A paused listener is watched again if its endpoint is still open (the
  // descriptor, held by the endpoint, is then still its listener).
  void resume_listeners(Clock::time_point now) {
    while (!paused_.empty() && paused_.front().until <= now) {
      const PausedListener p = paused_.front();
      paused_.pop_front();
      const auto ep = endpoints_.find(p.attachment);
      if (ep == endpoints_.end()) continue;
      const auto& listeners = ep->second->tcp;
      if (std::none_of(listeners.begin(), listeners.end(),
                       [&](const UniqueFd& l) { return l.get() == p.fd; })) {
        continue;
      }
      (void)watch(p.fd, EPOLLIN | EPOLLEXCLUSIVE, {Kind::kEndpointTcp, p.attachment});
    }
  }

  void close_client(uint64_t id) {
    auto c = clients_.find(id);
    if (c == clients_.end()) return;
    unwatch(c->second.fd.get());
    if (auto ep = endpoints_.find(c->second.attachment); ep != endpoints_.end()) {
      ep->second->tcp_clients--;
    }
    clients_.erase(c);
  }

  void client_ready(uint64_t id, uint32_t events) {
    if (events & (EPOLLERR | EPOLLHUP)) {  // reset: no answer can reach it any more
      close_client(id);
      return;
    }
    if (events & EPOLLOUT) {
      flush_client(id);
      if (!clients_.count(id)) return;
    }
    if (!(events & EPOLLIN)) return;
    TcpClient& client = clients_.at(id);
    if (client.held_back || client.sent_all) return;  // an event from before the rewatch
    uint8_t buf[16384];
    const ssize_t n = ::read(client.fd.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
      close_client(id);
      return;
    }
    if (n == 0) {
      client.sent_all = true;
    } else {
      client.in.insert(client.in.end(), buf, buf + n);
      client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
    }
    serve_client(id);
  }

  static bool has_room(const TcpClient& client) {
    return client.inflight < kMaxTcpClientInflight && client.out.size() < kMaxTcpClientOutput;
  }

  // Handles the client's complete queries (length-prefixed, RFC 1035 4.2.2)
  // while it has room, then watches it for what it can do next: more
  // queries when it has room, writing while answers wait. Called again
  // (resume_clients) when an answer or a write makes room.
  void serve_client(uint64_t id) {
    auto c = clients_.find(id);
    if (c == clients_.end()) return;
    size_t used = 0;
    while (has_room(c->second) && c->second.in.size() - used >= 2) {
      std::vector<uint8_t>& in = c->second.in;
      const size_t length = static_cast<size_t>(in[used] << 8 | in[used + 1]);
      if (in.size() - used - 2 < length) break;
      if (length == 0) {
        count(c->second.attachment, Count::kMalformed);
        close_client(id);
        return;
      }
      const std::vector<uint8_t> message(in.begin() + static_cast<long>(used + 2),
                                         in.begin() + static_cast<long>(used + 2 + length));
      used += 2 + length;
      handle_query(c->second.attachment, message,
                   ClientRef{.tcp = true, .udp_fd = -1, .peer = {}, .tcp_client = id});
      c = clients_.find(id);
      if (c == clients_.end()) return;
    }
    TcpClient& client = c->second;
    client.in.erase(client.in.begin(), client.in.begin() + static_cast<long>(used));
    client.held_back = !has_room(client);
    if (client.sent_all && client.inflight == 0 && client.out.empty()) {
      close_client(id);  // all answered; an incomplete last query never will be
      return;
    }
    watch_client(client);
  }

  void watch_client(const TcpClient& client) {
    rewatch(client.fd.get(), (client.held_back || client.sent_all ? 0u : uint32_t{EPOLLIN}) |
                                 (client.out.empty() ? 0u : uint32_t{EPOLLOUT}));
  }

  // The client has more room, or one answer fewer to wait for: if it was
  // held back or has sent all it will, serve it again at the end of the
  // turn (not now: this may run inside its own serve_client).
  void client_progressed(TcpClient& client, uint64_t id) {
    if (client.held_back || client.sent_all) resume_.push_back(id);
  }

  void resume_clients() {
    std::vector<uint64_t> ids;
    ids.swap(resume_);
    for (const uint64_t id : ids) serve_client(id);
  }

  void flush_client(uint64_t id) {
    auto c = clients_.find(id);
    if (c == clients_.end()) return;
    TcpClient& client = c->second;
    size_t written = 0;
    while (written < client.out.size()) {
      const ssize_t n = ::send(client.fd.get(), client.out.data() + written,
                               client.out.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {
        close_client(id);
        return;
      }
      written += static_cast<size_t>(n);
    }
    if (written > 0) {
      client.out.erase(client.out.begin(), client.out.begin() + static_cast<long>(written));
      client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
      client_progressed(client, id);
    }
    watch_client(client);
  }

  void reply(const ClientRef& client, const Query* query, std::vector<uint8_t> response) {
    if (response.empty()) return;
    if (!client.tcp) {
      if (query != nullptr && response.size() > client_udp_size(*query)) {
        auto cut = fit_for_udp(response, client_udp_size(*query));
        if (!cut.ok()) return;
        response = std::move(*cut);
      }
      Datagram& d = outbox_.emplace_back();
      d.fd = client.udp_fd;
      d.to_length = client.peer.to_sockaddr(d.to);
      d.bytes = std::move(response);
      return;
    }
    auto c = clients_.find(client.tcp_client);
    if (c == clients_.end()) return;  // the client went away meanwhile
    auto& out = c->second.out;
    out.push_back(static_cast<uint8_t>(response.size() >> 8));
    out.push_back(static_cast<uint8_t>(response.size()));
    out.insert(out.end(), response.begin(), response.end());
    recycle(std::move(response));
    flush_client(client.tcp_client);
  }

  // The attachment's name policy (null once it is gone), from this loop's
  // copy while the backend's generation stays put. Valid until the next
  // call.
  const NamePolicy* name_policy(uint64_t attachment) {
    const uint64_t generation = backend_.policy_generation();
    if (generation != policies_generation_) {
      policies_.clear();
      policies_generation_ = generation;
    }
    if (auto it = policies_.find(attachment); it != policies_.end()) return it->second.get();
    auto fetched = backend_.name_policy(attachment);
    if (!fetched) return nullptr;
    return policies_.emplace(attachment, std::move(fetched)).first->second.get();
  }

  void handle_query(uint64_t attachment, std::span<const uint8_t> wire, const ClientRef& client) {
    auto ep = endpoints_.find(attachment);
    if (ep == endpoints_.end()) return;
    Endpoint& endpoint = *ep->second;
    count(endpoint, Count::kQueries);
    // Over the rate, a datagram is dropped: answering a flood would amplify
    // it, and its source may be forged. A TCP client is who it says it is
    // and waits for each of its answers: it gets SERVFAIL (below).
    const bool over_rate = !take_token(endpoint);
    if (over_rate && !client.tcp) {
      count(endpoint, Count::kRateLimited);
      return;
    }
    auto query = parse_query(wire);
    if (query.ok() && over_rate) {
      count(endpoint, Count::kRateLimited);
      reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
      return;
    }
    if (!query.ok()) {
      count(endpoint, Count::kMalformed);
      const uint16_t code =
          query.error().code() == Errc::kUnsupported ? rcode::kNotImp : rcode::kFormErr;
      // Never answer something that is itself a response: two endpoints
      // (or a spoofed source) could otherwise bounce messages forever.
      if (wire.size() >= kHeaderSize && (wire[2] & 0x80) == 0) {
        reply(client, nullptr, make_header_response(wire, code));
      }
      return;
    }
    const NamePolicy* policy = name_policy(attachment);
    if (policy == nullptr) return;  // being detached
    const QueryVerdict verdict = judge_query(*policy, query->question.name);
    if (verdict == QueryVerdict::kRefuse) {
      count(endpoint, Count::kRefused);
      reply(client, &*query, make_error_response(*query, wire, config_.refusal_rcode));
      return;
    }
    if (config_.upstreams.empty()) {
      count(endpoint, Count::kServfail);
      reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
      return;
    }
    auto tcp_client = clients_.find(client.tcp_client);
    if (client.tcp && tcp_client == clients_.end()) return;
    // Counted first, then checked: the loops share the count.
    if (endpoint.inflight.fetch_add(1) >= config_.max_inflight) {
      endpoint.inflight--;
      count(endpoint, Count::kRateLimited);
      if (client.tcp) reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
      return;
    }
    if (!within_upstream_budget(endpoint)) {
      endpoint.inflight--;
      count(endpoint, Count::kRateLimited);
      reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
      return;
    }
    if (client.tcp) tcp_client->second.inflight++;
    const uint64_t id = next_id_++;
    Pending& p = new_pending(id);
    p.attachment = attachment;
    p.client = client;
    p.query = std::move(*query);
    p.verdict = verdict;
    p.policy_generation = policies_generation_;
    make_upstream_query(p.query, wire, p.wire);
    p.upstream = 0;
    p.attempts_left = std::max<size_t>(2, config_.upstreams.size());
    // A client over TCP wants what does not fit in UDP: ask over TCP.
    p.upstream_tcp = client.tcp;
    count(endpoint, Count::kForwarded);
    send_upstream(id);
  }

  // ---- datagrams out: queued during a loop turn, sent at its end ----

  // A reply to a client (bytes, to), or a query to an upstream over a
  // connected socket (the pending query's wire; looked up when sent, as
  // the query may have been dropped meanwhile).
  struct Datagram {
    int fd = -1;
    sockaddr_storage to{};
    socklen_t to_length = 0;
    std::vector<uint8_t> bytes;
    uint64_t query = 0;
  };

  // One sendmmsg per socket. A query whose send fails goes to its next
  // upstream (which queues it again); a reply that cannot be sent is lost,
  // as a datagram may be.
  void flush_datagrams() {
    do {
      std::vector<Datagram>& batch = outbox_turn_;
      batch.swap(outbox_);  // keeps both vectors' capacity from turn to turn
      // A turn writes to a few sockets (the endpoints' and the upstream
      // sockets): each one's datagrams go together, in order.
      std::vector<int>& fds = send_fds_;
      fds.clear();
      for (const Datagram& d : batch) {
        if (std::find(fds.begin(), fds.end(), d.fd) == fds.end()) fds.push_back(d.fd);
      }
      std::vector<uint64_t> failed;
      for (const int fd : fds) send_datagrams(fd, batch, failed);
      if (std::any_of(batch.begin(), batch.end(), [](const Datagram& d) { return d.query != 0; })) {
        queries_sent_at_ = Clock::now();
      }
      for (Datagram& d : batch) recycle(std::move(d.bytes));
      batch.clear();
      for (uint64_t id : failed) next_upstream(id);
    } while (!outbox_.empty());
  }

  // Sends the datagrams of `batch` that go out through `fd`, without moving
  // them; the queries among them that could not be sent are added to
  // `failed`.
  void send_datagrams(int fd, std::vector<Datagram>& batch, std::vector<uint64_t>& failed) {
    std::vector<mmsghdr>& msgs = send_msgs_;
    std::vector<iovec>& iov = send_iov_;
    std::vector<size_t>& index = send_index_;  // msgs[k] sends batch[index[k]]
    msgs.clear();
    iov.clear();
    index.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      Datagram& d = batch[i];
      if (d.fd != fd) continue;
      std::span<uint8_t> bytes = d.bytes;
      if (d.query != 0) {
        auto p = pending_.find(d.query);
        if (p == pending_.end()) continue;
        bytes = p->second.wire;
      }
      iov.push_back({bytes.data(), bytes.size()});
      mmsghdr m{};
      if (d.to_length != 0) {
        m.msg_hdr.msg_name = &d.to;
        m.msg_hdr.msg_namelen = d.to_length;
      }
      msgs.push_back(m);
      index.push_back(i);
    }
    for (size_t k = 0; k < msgs.size(); ++k) {
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    for (size_t sent = 0; sent < msgs.size();) {
      const int n = ::sendmmsg(
          fd, &msgs[sent], static_cast<unsigned>(std::min<size_t>(msgs.size() - sent, UINT_MAX)),
          MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      const Datagram& d = batch[index[sent]];
      if (d.query != 0) {
        backend_.report("dns_upstream_unreachable", 0,
                        config_.upstreams[pending_.at(d.query).upstream].to_string() + ": " +
                            errno_text(errno));
        failed.push_back(d.query);
      }
      ++sent;  // that one is lost (or retried upstream); the rest still go
    }
  }

  // ---- upstreams ----

  // Query ids from the kernel's CSPRNG, fetched in batches.
  uint16_t random_id() {
    if (random_used_ == random_ids_.size()) {
      // 256 bytes: getrandom never returns fewer for requests this small.
      auto* bytes = reinterpret_cast<uint8_t*>(random_ids_.data());
      for (size_t got = 0; got < sizeof random_ids_;) {
        const ssize_t n = getrandom(bytes + got, sizeof random_ids_ - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
      }
      random_used_ = 0;
    }
    return random_ids_[random_used_++];
  }

  // The loop's UDP socket to upstream `u`; 0 when none could be made.
  uint64_t udp_socket_for(size_t u) {
    if (active_sockets_.size() < config_.upstreams.size()) {
      active_sockets_.resize(config_.upstreams.size());
    }
    uint64_t& active = active_sockets_[u];
    if (active != 0) {
      UpstreamSocket& old = upstream_sockets_.at(active);
      if (old.uses < kQueriesPerSocket) return active;
      old.retired = true;
      close_if_idle(active);
      active = 0;
    }
    const net::SocketAddress& upstream = config_.upstreams[u];
    UniqueFd fd(::socket(upstream.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    const socklen_t len = upstream.to_sockaddr(ss);
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return 0;
    const uint64_t serial = next_id_++;
    if (!watch(fd.get(), EPOLLIN, {Kind::kUpstreamUdp, serial}).ok()) return 0;
    upstream_sockets_[serial] = UpstreamSocket{std::move(fd), u, 0, 0, false};
    active = serial;
    return serial;
  }

  void close_if_idle(uint64_t serial) {
    auto it = upstream_sockets_.find(serial);
    if (it == upstream_sockets_.end() || !it->second.retired || it->second.waiting > 0) return;
    unwatch(it->second.fd.get());
    upstream_sockets_.erase(it);
  }

  // The query stops waiting on its upstream socket or connection.
  void leave_upstream(Pending& p) {
    if (p.upstream_fd) {
      unwatch(p.upstream_fd.get());
      // Closed with a reset, not a FIN: the side that closes first keeps a
      // connection in TIME_WAIT for a minute, and with it its port for that
      // upstream. At a connection per query, one workload asking over TCP
      // at its dns.max_qps would take the host's ephemeral ports (28,232
      // by default: 470 connections a second to one upstream), and every
      // TCP connection to that resolver, the host's own too, would fail.
      // The answer (or the attempt) is over: a reset loses nothing.
      const linger reset{.l_onoff = 1, .l_linger = 0};
      setsockopt(p.upstream_fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      p.upstream_fd.reset();
    }
    if (p.udp_socket != 0) {
      waiting_.erase(wait_key(p.udp_socket, p.upstream_id));
      if (auto it = upstream_sockets_.find(p.udp_socket); it != upstream_sockets_.end()) {
        it->second.waiting--;
        close_if_idle(p.udp_socket);
      }
      p.udp_socket = 0;
    }
  }

  void send_upstream(uint64_t id) {
    Pending& p = pending_.at(id);
    const net::SocketAddress& upstream = config_.upstreams[p.upstream];
    bool ok = true;
    if (!p.upstream_tcp) {
      const uint64_t sock = udp_socket_for(p.upstream);
      ok = sock != 0;
      if (ok) {
        do {
          p.upstream_id = random_id();
        } while (waiting_.count(wait_key(sock, p.upstream_id)));
        put_id(p.wire, p.upstream_id);
        UpstreamSocket& s = upstream_sockets_.at(sock);
        s.uses++;
        s.waiting++;
        p.udp_socket = sock;
        waiting_[wait_key(sock, p.upstream_id)] = id;
        Datagram& d = outbox_.emplace_back();
        d.fd = s.fd.get();
        d.query = id;
      }
    } else {
      p.upstream_id = random_id();
      put_id(p.wire, p.upstream_id);
      // A connection per query: its fresh source port and the id must
      // both be guessed to forge an answer.
      UniqueFd fd(::socket(upstream.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_storage ss;
      const socklen_t len = upstream.to_sockaddr(ss);
      ok = fd.valid() && (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ||
                          errno == EINPROGRESS);
      p.tcp_connected = false;
      p.tcp_in.clear();
      p.tcp_out = {static_cast<uint8_t>(p.wire.size() >> 8), static_cast<uint8_t>(p.wire.size())};
      p.tcp_out.insert(p.tcp_out.end(), p.wire.begin(), p.wire.end());
      if (ok) ok = watch(fd.get(), EPOLLOUT, {Kind::kUpstream, id}).ok();
      if (ok) p.upstream_fd = std::move(fd);
    }
    if (!ok) {
      backend_.report("dns_upstream_unreachable", 0,
                      upstream.to_string() + ": " + errno_text(errno));
      next_upstream(id);
      return;
    }
    p.deadline = Clock::now() + config_.upstream_timeout;
    upstream_deadlines_.emplace_back(p.deadline, id);
  }

  void next_upstream(uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Pending& p = it->second;
    leave_upstream(p);
    if (--p.attempts_left == 0) {
      servfail(id);
      return;
    }
    p.upstream = (p.upstream + 1) % config_.upstreams.size();
    if (auto ep = endpoints_.find(p.attachment);
        ep != endpoints_.end() && !within_upstream_budget(*ep->second)) {
      count(*ep->second, Count::kRateLimited);
      servfail(id);
      return;
    }
    send_upstream(id);
  }

  // Gives up on forwarded query `id`: its client gets SERVFAIL.
  void servfail(uint64_t id) {
    count(pending_.at(id).attachment, Count::kServfail);
    PendingEntry done = finish(id);
    reply_to(done.mapped(), error_response(done.mapped(), rcode::kServFail));
    recycle(std::move(done));
  }

  // Our own answer to a forwarded query: its header and question as the
  // client sent them (the wire we keep carries the upstream's id).
  static std::vector<uint8_t> error_response(const Pending& p, uint16_t code) {
    std::vector<uint8_t> out = make_error_response(p.query, p.wire, code);
    put_id(out, p.query.header.id);
    return out;
  }

  // Takes the query out of the books and the endpoint's in-flight count;
  // its reply goes out through reply_to.
  PendingEntry finish(uint64_t id) {
    auto it = pending_.find(id);
    leave_upstream(it->second);
    PendingEntry entry = pending_.extract(it);
    const uint64_t attachment = entry.mapped().attachment;
    if (auto ep = endpoints_.find(attachment); ep != endpoints_.end()) ep->second->inflight--;
    return entry;
  }

  // A table entry for query `id`: a spare one when there is.
  Pending& new_pending(uint64_t id) {
    if (spare_pending_.empty()) return pending_[id];
    PendingEntry entry = std::move(spare_pending_.back());
    spare_pending_.pop_back();
    entry.key() = id;
    return pending_.insert(std::move(entry)).position->second;
  }

  // Keeps an answered query's entry (and its buffers) for a later one.
  void recycle(PendingEntry entry) {
    if (entry.empty() || spare_pending_.size() >= kSparePending) return;
    Pending& p = entry.mapped();
    std::vector<uint8_t> wire = std::move(p.wire);
    std::string chain = std::move(p.chain);
    p = Pending{};
    if (wire.capacity() <= kKeptBufferSize) p.wire = std::move(wire);
    if (chain.capacity() <= kKeptBufferSize) p.chain = std::move(chain);
    spare_pending_.push_back(std::move(entry));
  }

  // A buffer for a reply: a spare one when there is.
  std::vector<uint8_t> new_buffer(std::span<const uint8_t> bytes) {
    std::vector<uint8_t> buffer;
    if (!spare_buffers_.empty()) {
      buffer = std::move(spare_buffers_.back());
      spare_buffers_.pop_back();
    }
    buffer.assign(bytes.begin(), bytes.end());
    return buffer;
  }

  void recycle(std::vector<uint8_t> buffer) {
    if (buffer.capacity() == 0 || buffer.capacity() > kKeptBufferSize ||
        spare_buffers_.size() >= kSparePending) {
      return;
    }
    spare_buffers_.push_back(std::move(buffer));
  }

  // The reply to a finished query (none when `response` is empty). A TCP
  // client's count of queries waiting drops only here, with the answer in
  // its output: one that has sent all it will is closed when that count
  // and its output are both empty, and an answer still being learned must
  // not be cut off.
  void reply_to(const Pending& p, std::vector<uint8_t> response) {
    if (p.client.tcp) {
      if (auto c = clients_.find(p.client.tcp_client); c != clients_.end()) {
        c->second.inflight--;
        client_progressed(c->second, p.client.tcp_client);
      }
    }
    reply(p.client, &p.query, std::move(response));
  }

  void upstream_ready(uint64_t id, uint32_t events) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Pending& p = it->second;
    const int fd = p.upstream_fd.get();
    if (!p.tcp_connected) {
      int error = 0;
      socklen_t len = sizeof error;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        next_upstream(id);
        return;
      }
      p.tcp_connected = true;
    }
    if (!p.tcp_out.empty()) {
      const ssize_t n = ::send(fd, p.tcp_out.data(), p.tcp_out.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        next_upstream(id);
        return;
      }
      p.tcp_out.erase(p.tcp_out.begin(), p.tcp_out.begin() + n);
      if (p.tcp_out.empty()) rewatch(fd, EPOLLIN);
      return;
    }
    uint8_t buf[16384];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      next_upstream(id);
      return;
    }
    p.tcp_in.insert(p.tcp_in.end(), buf, buf + n);
    if (p.tcp_in.size() < 2) return;
    const size_t length = static_cast<size_t>(p.tcp_in[0] << 8 | p.tcp_in[1]);
    if (p.tcp_in.size() < 2 + length) return;
    std::vector<uint8_t> answer(p.tcp_in.begin() + 2,
                                p.tcp_in.begin() + 2 + static_cast<long>(length));
    if (!try_answer(id, answer)) next_upstream(id);  // a TCP stream carries one answer
  }

  void upstream_udp_ready(uint64_t serial) {
    for (int read = 0; read < kReadBurst;) {
      auto sock = upstream_sockets_.find(serial);
      if (sock == upstream_sockets_.end()) return;
      const int n = recv_batch_.receive(sock->second.fd.get());
      if (n == 0) return;
      if (n < 0) {
        // An ICMP error (port unreachable): that upstream is not there.
        // Every query waiting on this socket went to it; try the next.
        backend_.report(
            "dns_upstream_unreachable", 0,
            config_.upstreams[sock->second.upstream].to_string() + ": " + errno_text(errno));
        std::vector<uint64_t> failed;
        for (const auto& [key, pending] : waiting_) {
          if (key >> 16 == serial) failed.push_back(pending);
        }
        for (uint64_t pending : failed) next_upstream(pending);
        ++read;
        continue;
      }
      for (int i = 0; i < n; ++i) {
        const std::span<uint8_t> answer = recv_batch_.message(i);
        if (answer.size() < kHeaderSize || recv_batch_.truncated(i)) continue;
        const auto waiter =
            waiting_.find(wait_key(serial, static_cast<uint16_t>(answer[0] << 8 | answer[1])));
        if (waiter == waiting_.end()) continue;  // late, or not ours
        try_answer(waiter->second, answer);
      }
      if (static_cast<unsigned>(n) < kBatch) return;
      read += n;
    }
  }

  // An answer for query `id`? Returns false (and leaves the query waiting)
  // for anything that is not: wrong id, wrong question, not a response, or
  // unparseable. Off-path forgeries must match both to be considered.
  bool try_answer(uint64_t id, std::span<uint8_t> answer) {
    Pending& p = pending_.at(id);
    auto message = parse_message(answer);
    if (!message.ok() || !message->header.qr || message->header.id != p.upstream_id ||
        message->questions.size() != 1 || message->questions[0].name != p.query.question.name ||
        message->questions[0].type != p.query.question.type ||
        message->questions[0].klass != p.query.question.klass) {
      return false;
    }
    release(finish(id), *message, answer);
    return true;
  }

  // The answer goes to the client only after its addresses are in the
  // kernel (learn_and_release). The query is judged again if any policy
  // changed in flight.
  void release(PendingEntry entry, const Message& message, std::span<uint8_t> answer) {
    Pending& p = entry.mapped();
    const auto done = [&](std::vector<uint8_t> response) {
      reply_to(p, std::move(response));
      recycle(std::move(entry));
    };
    const auto refuse = [&](uint16_t code) { done(error_response(p, code)); };
    const NamePolicy* policy = name_policy(p.attachment);
    if (policy == nullptr) {  // being detached
      done({});
      return;
    }
    const QueryVerdict verdict = policies_generation_ == p.policy_generation
                                     ? p.verdict
                                     : judge_query(*policy, p.query.question.name);
    if (verdict == QueryVerdict::kRefuse) {
      count(p.attachment, Count::kRefused);
      refuse(config_.refusal_rcode);
      return;
    }
    if (verdict == QueryVerdict::kResolve) {
      auto learned = addresses_for(message, p.query.question.name);
      if (!learned.ok()) {
        backend_.report("dns_answer_unusable", p.attachment, learned.error().message());
        count(p.attachment, Count::kServfail);
        refuse(rcode::kServFail);
        return;
      }
      for (size_t i = 1; i < learned->chain.size(); ++i) {
        if (chain_name_denied(*policy, learned->chain[i])) {
          count(p.attachment, Count::kRefused);
          refuse(config_.refusal_rcode);
          return;
        }
      }
      for (LearnedAddress& a : learned->addresses) {
        a.ttl = std::clamp(a.ttl, config_.min_ttl, config_.max_ttl);
      }
      if (!learned->addresses.empty()) {
        cap_ttls(answer, message, config_.max_ttl);
        put_id(answer, p.query.header.id);
        encode_chain(learned->chain, p.chain);
        p.policy_generation = policies_generation_;  // what judged it just now
        learning_.push_back({std::move(entry), new_buffer(answer), std::move(learned->addresses)});
        return;
      }
    }
    cap_ttls(answer, message, config_.max_ttl);
    put_id(answer, p.query.header.id);
    count(p.attachment, Count::kAnswered);
    done(new_buffer(answer));
  }

  // Writes what this turn's answers taught, one learn() per attachment
  // (a few system calls for the lot instead of a few per answer), then
  // queues the answers.
  void learn_and_release() {
    std::vector<Learning>& batch = learning_turn_;
    batch.swap(learning_);  // keeps both vectors' capacity from turn to turn
    const auto by_attachment = [](const Learning& a, const Learning& b) {
      return a.query().attachment < b.query().attachment;
    };
    // Usually all of one attachment: then there is nothing to move.
    if (!std::is_sorted(batch.begin(), batch.end(), by_attachment)) {
      std::stable_sort(batch.begin(), batch.end(), by_attachment);
    }
    for (size_t first = 0; first < batch.size();) {
      size_t end = first + 1;
      while (end < batch.size() &&
             batch[end].query().attachment == batch[first].query().attachment) {
        ++end;
      }
      learn_and_release(std::span(batch).subspan(first, end - first));
      first = end;
    }
    batch.clear();
  }

  // An answer waiting for this turn's learn().
  struct Learning {
    PendingEntry entry;           // the query; the addresses' `chain` views its `chain`
    std::vector<uint8_t> answer;  // ready to go: TTLs capped, client's id
    LearnedAddresses addresses;
    Pending& query() { return entry.mapped(); }
    const Pending& query() const { return entry.mapped(); }
  };

  // How often one turn's answers are judged again because policies keep
  // changing under them before they get SERVFAIL.
  static constexpr int kMaxJudgements = 4;

  // One attachment's answers: learned, then released. An answer whose
  // hosts could not be written gets SERVFAIL instead.
  void learn_and_release(std::span<Learning> answers) {
    const uint64_t attachment = answers.front().query().attachment;
    Result<LearnOutcome> learned = learn_all(answers);
    for (int judged = 1; learned.ok() && *learned == LearnOutcome::kPolicyChanged; ++judged) {
      if (judged == kMaxJudgements) {
        learned = Error(Errc::kUnavailable, "the policy changed under every attempt to learn");
        break;
      }
      answers = answers.first(judge_again(answers));
      if (answers.empty()) return;
      learned = learn_all(answers);
    }
    const auto ep = endpoints_.find(attachment);
    CountSlot* counts = ep == endpoints_.end() ? nullptr : &slot(*ep->second);
    if (!learned.ok()) backend_.report("dns_learn_failed", attachment, learned.error().message());
    for (Learning& l : answers) {
      // The write failed (a full table, the attachment's share used up):
      // perhaps because of another answer's hosts. Each answer is then
      // learned alone, so that only those that do not fit are refused.
      const auto held = [](const Result<LearnOutcome>& r) {
        return r.ok() && *r == LearnOutcome::kHeld;
      };
      const bool ok = held(learned) ||
                      (answers.size() > 1 &&
                       held(backend_.learn(attachment, l.addresses, l.query().policy_generation)));
      if (ok) {
        if (counts) {
          counts->add(Count::kAnswered, 1);
          counts->add(Count::kAnswerAddresses, l.addresses.size());
        }
        reply_to(l.query(), std::move(l.answer));
      } else {
        if (counts) counts->add(Count::kServfail, 1);
        reply_to(l.query(), error_response(l.query(), rcode::kServFail));
        recycle(std::move(l.answer));
      }
      recycle(std::move(l.entry));
    }
  }

  // One learn() for all the answers' addresses, judged at the oldest
  // generation among them.
  Result<LearnOutcome> learn_all(std::span<Learning> answers) {
    std::vector<LearnedAddress>& addresses = learn_scratch_;
    addresses.clear();
    uint64_t judged_at = answers.front().query().policy_generation;
    for (Learning& l : answers) {
      for (LearnedAddress& a : l.addresses) a.chain = l.query().chain;
      addresses.insert(addresses.end(), l.addresses.begin(), l.addresses.end());
      judged_at = std::min(judged_at, l.query().policy_generation);
    }
    return backend_.learn(answers.front().query().attachment, addresses, judged_at);
  }

  // A policy changed between judging these answers and learning them:
  // each is judged again by the policy now. A refused one is answered so
  // and teaches nothing; the others move to the front, their count
  // returned.
  size_t judge_again(std::span<Learning> answers) {
    size_t kept = 0;
    for (Learning& l : answers) {
      const NamePolicy* policy = name_policy(l.query().attachment);
      const auto done = [&](std::vector<uint8_t> response) {
        reply_to(l.query(), std::move(response));
        recycle(std::move(l.answer));
        recycle(std::move(l.entry));
      };
      if (policy == nullptr) {  // being detached
        done({});
        continue;
      }
      if (answer_refused(*policy, decode_chain(l.query().chain))) {
        count(l.query().attachment, Count::kRefused);
        done(error_response(l.query(), config_.refusal_rcode));
        continue;
      }
      l.query().policy_generation = policies_generation_;
      if (&answers[kept] != &l) answers[kept] = std::move(l);
      ++kept;
    }
    return kept;
  }

  ProxyConfig config_;
  ProxyBackend& backend_;
  AcceptGate& gate_;                       // shared by the loops
  UpstreamBudget* const upstream_budget_;  // shared by the loops; null: no limit
  const size_t index_;                     // of this loop's slot in every endpoint's counts
  std::array<uint16_t, 128> random_ids_{};
  size_t random_used_ = random_ids_.size();
  Clock::time_point queries_sent_at_;  // the last turn that sent any upstream
  uint32_t spins_missed_ = 0;          // polls in a row that saw nothing
  uint32_t spins_skipped_ = 0;
  Clock::duration spin_budget_{};  // polling time earned by sleeping
  UniqueFd epoll_, wake_;
  std::thread thread_;
  bool stopping_ = false;  // only touched on the loop's thread

  std::mutex tasks_mu_;
  std::deque<std::function<void()>> tasks_;

  // Loop-thread state.
  std::unordered_map<int, Ref> refs_;
  std::unordered_map<uint64_t, std::shared_ptr<Endpoint>> endpoints_;
  std::unordered_map<uint64_t, TcpClient> clients_;
  PendingTable pending_;
  std::vector<PendingEntry> spare_pending_;
  std::vector<std::vector<uint8_t>> spare_buffers_;  // for replies
  std::deque<Deadline> upstream_deadlines_;
  struct PausedListener {
    Clock::time_point until;
    uint64_t attachment;
    int fd;
  };
  std::deque<PausedListener> paused_;  // in the order they come due (all pauses are as long)
  ClientDeadlines client_deadlines_;
  std::unordered_map<uint64_t, UpstreamSocket> upstream_sockets_;  // by serial
  std::vector<uint64_t> active_sockets_;             // per upstream: the serial in use, 0 = none
  absl::flat_hash_map<uint64_t, uint64_t> waiting_;  // wait_key(socket, id) -> query
  absl::flat_hash_map<uint64_t, std::shared_ptr<const NamePolicy>> policies_;  // see name_policy()
  uint64_t policies_generation_ = 0;
  RecvBatch recv_batch_;
  // Answers waiting for this turn's learn(), replies and queries for its
  // sendmmsg, endpoints whose sockets close when the turn is over.
  std::vector<Learning> learning_, learning_turn_;
  std::vector<LearnedAddress> learn_scratch_;  // one attachment's addresses of a turn
  std::vector<Datagram> outbox_, outbox_turn_;
  std::vector<int> send_fds_;  // flush_datagrams' scratch space
  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iov_;
  std::vector<size_t> send_index_;
  std::vector<std::shared_ptr<Endpoint>> closing_;
  std::vector<uint64_t> resume_;  // TCP clients to serve again at the end of the turn
  uint64_t next_id_ = 1;
};

DnsProxy::DnsProxy(const ProxyConfig& config, ProxyBackend& backend)
    : config_(config),
      backend_(backend),
      accept_gate_(std::make_unique<AcceptGate>()),
      upstream_budget_(config.max_upstream_qps == 0
                           ? nullptr
                           : std::make_unique<UpstreamBudget>(config.max_upstream_qps)) {}

DnsProxy::~DnsProxy() = default;

Result<std::unique_ptr<DnsProxy>> DnsProxy::start(const ProxyConfig& config,
                                                  ProxyBackend& backend) {
  if (config.min_ttl > config.max_ttl) {
    return Error(Errc::kInvalidArgument, "DNS min_ttl is above max_ttl");
  }
  if (config.threads == 0) return Error(Errc::kInvalidArgument, "DNS threads must be at least 1");
  std::unique_ptr<DnsProxy> proxy(new DnsProxy(config, backend));
  proxy->accept_gate_->spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!proxy->accept_gate_->spare) return errno_error("open /dev/null");
  for (unsigned i = 0; i < config.threads; ++i) {
    auto loop = std::make_unique<Loop>(config, backend, *proxy->accept_gate_,
                                       proxy->upstream_budget_.get(), i);
    SEBPF_RETURN_IF_ERROR(loop->init());
    proxy->loops_.push_back(std::move(loop));
  }
  return proxy;
}

Result<std::shared_ptr<Endpoint>> DnsProxy::bind(const EndpointSpec& spec, const Endpoint* kept) {
  std::vector<std::string> skipped;
  SEBPF_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint, bind_endpoint(spec, kept, skipped));
  for (const std::string& why : skipped) {
    backend_.report("dns_endpoint_address_skipped", spec.attachment, why);
  }
  return endpoint;
}

Status DnsProxy::open_endpoint(const EndpointSpec& spec) {
  SEBPF_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint, bind(spec, nullptr));
  endpoint->counts = std::shared_ptr<CountSlot[]>(new CountSlot[loops_.size()]);
  std::lock_guard lock(mu_);
  if (!open_.emplace(spec.attachment, endpoint).second) {
    return Error(Errc::kAlreadyExists,
                 "attachment " + std::to_string(spec.attachment) + " has a DNS endpoint already");
  }
  for (auto& loop : loops_) loop->open_endpoint(endpoint);
  return ok_status();
}

Status DnsProxy::move_endpoint(const EndpointSpec& spec) {
  std::shared_ptr<Endpoint> old;
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(spec.attachment); it != open_.end()) old = it->second;
  }
  if (old == nullptr) return open_endpoint(spec);
  SEBPF_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint, bind(spec, old.get()));
  endpoint->counts = old->counts;
  std::lock_guard lock(mu_);
  auto it = open_.find(spec.attachment);
  if (it == open_.end() || it->second != old) {
    return Error(Errc::kUnavailable, "the DNS endpoint of attachment " +
                                         std::to_string(spec.attachment) +
                                         " was closed or moved meanwhile");
  }
  it->second = endpoint;
  // Each loop runs its tasks in order: it lets go of the old endpoint,
  // then serves the new one.
  for (auto& loop : loops_) {
    loop->close_endpoint(spec.attachment);
    loop->open_endpoint(endpoint);
  }
  return ok_status();
}

void DnsProxy::close_endpoint(uint64_t attachment) {
  std::lock_guard lock(mu_);
  if (open_.erase(attachment) == 0) return;
  for (auto& loop : loops_) loop->close_endpoint(attachment);
}

std::optional<EndpointCounters> DnsProxy::counters(uint64_t attachment) const {
  std::shared_ptr<Endpoint> endpoint;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(attachment);
    if (it == open_.end()) return std::nullopt;
    endpoint = it->second;
  }
  const auto sum = [&](Count c) {
    uint64_t total = 0;
    for (size_t i = 0; i < loops_.size(); ++i) total += endpoint->counts[i].get(c);
    return total;
  };
  return EndpointCounters{.queries = sum(Count::kQueries),
                          .refused = sum(Count::kRefused),
                          .forwarded = sum(Count::kForwarded),
                          .answered = sum(Count::kAnswered),
                          .servfail = sum(Count::kServfail),
                          .malformed = sum(Count::kMalformed),
                          .rate_limited = sum(Count::kRateLimited),
                          .answer_addresses = sum(Count::kAnswerAddresses)};
}

}  // namespace sebpf::dns
