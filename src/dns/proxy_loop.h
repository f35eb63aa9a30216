// One of the DNS proxy's event loops: it reads the endpoints' queries,
// judges them, forwards them upstream, learns what the answers teach and
// releases them. Its members are defined over five files, one per part of
// the job: proxy_loop.cc (the loop, its polling, its timers),
// proxy_loop_queries.cc (clients and their queries),
// proxy_loop_upstream.cc (datagrams out, the upstreams, the books of
// queries in flight), proxy_loop_streams.cc (TCP streams to the
// upstreams) and proxy_loop_answers.cc (answers: checked, learned,
// released).
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <queue>
#include <span>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "dns/pending_query.h"
#include "dns/proxy.h"
#include "dns/proxy_endpoint.h"
#include "dns/receive_batch.h"

namespace sebpf::dns {

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

  Status init();
  ~Loop();

  // Runs `task` on the loop's thread, later. Never waits: a caller may hold
  // a lock the loop's thread needs (the backend's), so waiting could
  // deadlock.
  void post(std::function<void()> task);

  // Serves the endpoint from the loop's next turn.
  void open_endpoint(std::shared_ptr<Endpoint> endpoint);
  void close_endpoint(uint64_t attachment);
  // From the loop's next turn, serves `endpoint` instead of the one its
  // attachment had, keeping the TCP clients and answering the queries in
  // flight that came in on an address both have.
  void move_endpoint(std::shared_ptr<Endpoint> endpoint);
  // From the loop's next turn, takes no new query (from the endpoints'
  // sockets, which keep them queued, nor from its TCP clients) and ends its
  // thread once every query it took is answered.
  void drain();
  // Ready once the loop's thread has ended.
  std::shared_future<void> finished() const { return finished_; }

 private:
  // A TCP client may pipeline queries (RFC 7766). It is read from while it
  // has fewer than kMaxTcpClientInflight queries waiting for their answers
  // and fewer than kMaxTcpClientOutput bytes of answers it has not read yet;
  // beyond that its further queries wait in its own socket, so a client that
  // never reads cannot make the endpoint hold its answers without bound.
  static constexpr uint32_t kMaxTcpClientInflight = 32;
  static constexpr size_t kMaxTcpClientOutput = 64 * 1024;
  // At most kReadBurst datagrams are read per readiness event, so one busy
  // socket cannot starve the others.
  static constexpr int kReadBurst = 64;
  // An endpoint with dns.max_inflight queries waiting for upstreams is not
  // read from: its further queries wait in its UDP socket (which holds
  // dns.receive_buffer_bytes of them) or in its TCP clients' sockets,
  // where UDP ones were dropped and TCP ones answered SERVFAIL before. A
  // read takes no more than there is room for (claim_inflight). A loop
  // that stops reading a UDP socket stops watching it too (it stays
  // readable); a TCP client is held back as when it has too much in
  // flight. Each is taken up again in a turn in which there is room; the
  // room may come from another loop's answers, so the loop checks at
  // least every kRoomRecheck.
  static constexpr auto kRoomRecheck = std::chrono::milliseconds(1);
  // How long a loop leaves a listener alone when it can neither take a
  // connection nor shed one (out of descriptors, the spare lost).
  static constexpr auto kAcceptPause = std::chrono::milliseconds(100);
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
  static constexpr uint32_t kQueriesPerSocket = 256;
  // TCP to an upstream: an endpoint's queries share a connection per loop
  // (RFC 7766 pipelining, answers matched by id and question), which takes
  // new queries until kQueriesPerStream wait on it and closes when none
  // does. A connection per query, as before, let one workload asking over
  // TCP hold a connection (a descriptor and an ephemeral port) upstream
  // per query in flight, dns.max_inflight of them: a few such workloads
  // would take a resolver's TCP slots (Unbound's default: 10 per thread)
  // or the host's ports to it, from every workload. The cap bounds how
  // many queries one dropped connection takes with it (BIND's resolver
  // caps its own at 256 for that reason).
  static constexpr size_t kQueriesPerStream = 256;
  // An upstream may close a connection after as many answers as it likes:
  // the queries still waiting on one that answered some are sent again on
  // a fresh one, up to kStreamResends times each, before the close costs
  // them an attempt.
  static constexpr uint8_t kStreamResends = 4;

  enum class Kind : uint8_t {
    kWake,
    kEndpointUdp,
    kEndpointTcp,
    kTcpClient,
    kUpstreamTcp,  // a TCP stream to an upstream (id: the stream's serial)
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
    uint32_t inflight = 0;  // forwarded queries whose answer is not in `out` yet
    bool sent_all = false;  // the client shut its sending side: closed once answered
    // Not read from: too much in flight or unread, or no room in the
    // endpoint's in-flight count (serve_client).
    bool held_back = false;
    bool waiting_room = false;  // in room_waiters_
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

  struct UpstreamStream {
    UniqueFd fd;
    uint64_t attachment = 0;
    size_t upstream = 0;
    bool connected = false;
    bool answered = false;     // an answer came on it
    bool writing = false;      // watched for EPOLLOUT
    Clock::time_point heard;   // when it connected, then its last answer
    std::vector<uint8_t> out;  // queries not written yet, each length-prefixed
    std::vector<uint8_t> in;   // what has come of the next answers
    absl::flat_hash_map<uint16_t, uint64_t> waiting;  // upstream id -> query
  };

  static uint64_t wait_key(uint64_t socket, uint16_t id) { return socket << 16 | id; }

  // ---- the loop (proxy_loop.cc) ----

  Status watch(int fd, uint32_t events, Ref ref);
  void rewatch(int fd, uint32_t events);
  void unwatch(int fd);
  // Stops watching the endpoint's sockets (its UDP sockets and listeners).
  void unwatch_endpoint(const Endpoint& endpoint);
  void serve(std::shared_ptr<Endpoint> endpoint);
  // Stops serving the attachment's endpoint, and drops its TCP clients and
  // the queries in flight but those a `successor` (moved to) can serve.
  void let_go(uint64_t attachment, Endpoint* successor);
  void run();
  void dispatch(int fd, Ref ref, uint32_t events);
  void run_tasks();

  // ---- waiting for answers (proxy_loop.cc) ----
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

  void earn_spin(Clock::duration slept);

  // Events that came while polling (their count), or 0: sleep.
  int spin_for_answers(std::span<epoll_event> events);

  // ---- timers (proxy_loop.cc) ----
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

  int next_timeout_ms();
  void fire_timers();

  // ---- clients and their queries (proxy_loop_queries.cc) ----

  bool take_token(Endpoint& ep);

  // Whether the host's upstream budget lets the endpoint send a query now
  // (a first attempt or a retry); taken from it if so.
  bool within_upstream_budget(Endpoint& ep);

  // This loop's counts of an endpoint.
  CountSlot& slot(Endpoint& endpoint) { return endpoint.counts[index_]; }
  void count(Endpoint& endpoint, Count c) { slot(endpoint).add(c, 1); }
  // By attachment: nothing is counted once its endpoint is closed.
  void count(uint64_t attachment, Count c);
  void read_udp_queries(int fd, uint64_t attachment);
  // Waits for room in the endpoint's in-flight count: the UDP socket `fd`
  // unwatched, or TCP client `client` held back.
  void wait_for_room(uint64_t attachment, int fd, uint64_t client);
  // Watches again the UDP sockets, and serves again the TCP clients, whose
  // endpoints have room (kRoomRecheck).
  void take_up_room();
  void accept_clients(int listen_fd, uint64_t attachment);

  enum class Accepted {
    kClient,            // in `fd`
    kShed,              // out of descriptors: taken with the spare's and closed
    kOutOfDescriptors,  // and no spare to shed with
    kNone,              // none waiting (or an error the next accept reports again)
  };

  Accepted accept_one(int listen_fd, UniqueFd& fd);

  // Neither taken nor shed, the connection stays queued and the listener
  // ready: this loop stops watching it for a while rather than spin.
  void pause_listener(int listen_fd, uint64_t attachment);

  // A paused listener is watched again if its endpoint is still open (the
  // descriptor, held by the endpoint, is then still its listener).
  void resume_listeners(Clock::time_point now);
  void close_client(uint64_t id);
  void client_ready(uint64_t id, uint32_t events);
  static bool has_room(const TcpClient& client);

  // Handles the client's complete queries (length-prefixed, RFC 1035 4.2.2)
  // while it has room, then watches it for what it can do next: more
  // queries when it has room, writing while answers wait. Called again
  // (resume_clients) when an answer or a write makes room.
  void serve_client(uint64_t id);
  void watch_client(const TcpClient& client);

  // The client has more room, or one answer fewer to wait for: if it was
  // held back or has sent all it will, serve it again at the end of the
  // turn (not now: this may run inside its own serve_client).
  void client_progressed(TcpClient& client, uint64_t id);
  void resume_clients();
  void flush_client(uint64_t id);
  void reply(const ClientRef& client, const Query* query, std::vector<uint8_t> response);

  // The attachment's name policy (null once it is gone), from this loop's
  // copy while the backend's generation stays put. Valid until the next
  // call.
  const NamePolicy* name_policy(uint64_t attachment);
  // The query comes with a place in the endpoint's in-flight count,
  // claimed before it was read (so that loops reading the same socket at
  // once never take more than there is room for); given back unless the
  // query goes upstream.
  void handle_query(uint64_t attachment, std::span<const uint8_t> wire, const ClientRef& client);
  // Up to `want` places in the endpoint's in-flight count, as many as are
  // free.
  uint32_t claim_inflight(Endpoint& endpoint, uint32_t want) const;

  // ---- datagrams out: queued during a loop turn, sent at its end
  // (proxy_loop_upstream.cc) ----

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
  void flush_datagrams();

  // Sends the datagrams of `batch` that go out through `fd`, without moving
  // them; the queries among them that could not be sent are added to
  // `failed`.
  void send_datagrams(int fd, std::vector<Datagram>& batch, std::vector<uint64_t>& failed);

  // ---- upstreams and the books of queries in flight (proxy_loop_upstream.cc) ----

  // Query ids from the kernel's CSPRNG, fetched in batches.
  uint16_t random_id();

  // The loop's UDP socket to upstream `u`; 0 when none could be made.
  uint64_t udp_socket_for(size_t u);
  void close_if_idle(uint64_t serial);

  // The query stops waiting on its upstream socket or connection.
  void leave_upstream(Pending& p);
  void send_upstream(uint64_t id);
  void next_upstream(uint64_t id);
  // Sends query `id` upstream once more (a retry, or again after its
  // stream closed) if the host's upstream budget lets it; SERVFAIL if not.
  void send_again(uint64_t id);

  // Gives up on forwarded query `id`: its client gets SERVFAIL.
  void servfail(uint64_t id);

  // Our own answer to a forwarded query: its header and question as the
  // client sent them (the wire we keep carries the upstream's id).
  static std::vector<uint8_t> error_response(const Pending& p, uint16_t code);

  // Takes the query out of the books and the endpoint's in-flight count;
  // its reply goes out through reply_to.
  PendingEntry finish(uint64_t id);

  // A table entry for query `id`: a spare one when there is.
  Pending& new_pending(uint64_t id);

  // Keeps an answered query's entry (and its buffers) for a later one.
  void recycle(PendingEntry entry);

  // A buffer for a reply: a spare one when there is.
  std::vector<uint8_t> new_buffer(std::span<const uint8_t> bytes);
  void recycle(std::vector<uint8_t> buffer);

  // The reply to a finished query (none when `response` is empty). A TCP
  // client's count of queries waiting drops only here, with the answer in
  // its output: one that has sent all it will is closed when that count
  // and its output are both empty, and an answer still being learned must
  // not be cut off.
  void reply_to(const Pending& p, std::vector<uint8_t> response);

  // ---- TCP streams to the upstreams (proxy_loop_streams.cc) ----

  // The stream the attachment's queries to upstream `u` go on, opened if
  // none takes more; 0 when none could be made.
  uint64_t stream_for(uint64_t attachment, size_t u);
  // Puts query `id` on the stream, under an id no other query there has.
  void put_on_stream(uint64_t serial, uint64_t id);
  // The query stops waiting on its stream, which closes if none is left.
  void leave_stream(Pending& p);
  void stream_ready(uint64_t serial, uint32_t events);
  // Writes what the stream has to write; false if the connection failed.
  bool write_stream(UpstreamStream& s);
  void read_stream(uint64_t serial);
  // Closed with a reset (see the definition), its queries left as they are.
  void close_stream(uint64_t serial);
  // The connection failed, the upstream closed it, or it is dead: closed,
  // and its queries move on (sent again on a fresh stream if
  // `resend_if_answered` and it answered some, else to their next attempt).
  void end_stream(uint64_t serial, bool resend_if_answered);
  // Query `id` waited its whole time for an answer: the next attempt, or
  // for every query on its stream if nothing came on it for that long.
  void upstream_timed_out(uint64_t id, Clock::time_point now);

  // ---- answers (proxy_loop_answers.cc) ----

  void upstream_udp_ready(uint64_t serial);

  // An answer for query `id`? Returns false (and leaves the query waiting)
  // for anything that is not: wrong id, wrong question, not a response, or
  // unparseable. Off-path forgeries must match both to be considered.
  bool try_answer(uint64_t id, std::span<uint8_t> answer);

  // The answer goes to the client only after its addresses are in the
  // kernel (learn_and_release). The query is judged again if any policy
  // changed in flight.
  void release(PendingEntry entry, const Message& message, std::span<uint8_t> answer);

  // Writes what this turn's answers taught, one learn() per attachment
  // (a few system calls for the lot instead of a few per answer), then
  // queues the answers.
  void learn_and_release();

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
  void learn_and_release(std::span<Learning> answers);

  // One learn() for all the answers' addresses, judged at the oldest
  // generation among them.
  Result<LearnOutcome> learn_all(std::span<Learning> answers);

  // A policy changed between judging these answers and learning them:
  // each is judged again by the policy now. A refused one is answered so
  // and teaches nothing; the others move to the front, their count
  // returned.
  size_t judge_again(std::span<Learning> answers);

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
  bool draining_ = false;  // as stopping_
  std::promise<void> ended_;
  std::shared_future<void> finished_ = ended_.get_future().share();

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
  // Waiting for room (wait_for_room): a TCP client (its id; ids start at
  // 1), or with `client` 0 the UDP socket `fd`.
  struct RoomWaiter {
    uint64_t attachment;
    int fd;
    uint64_t client;
  };
  std::vector<RoomWaiter> room_waiters_, room_waiters_turn_;
  Clock::time_point room_recheck_{};  // the latest a turn checks them
  ClientDeadlines client_deadlines_;
  std::unordered_map<uint64_t, UpstreamSocket> upstream_sockets_;  // by serial
  std::vector<uint64_t> active_sockets_;             // per upstream: the serial in use, 0 = none
  absl::flat_hash_map<uint64_t, uint64_t> waiting_;  // wait_key(socket, id) -> query
  std::unordered_map<uint64_t, UpstreamStream> streams_;  // by serial
  // (attachment, upstream) -> the stream its new queries go on.
  absl::flat_hash_map<std::pair<uint64_t, size_t>, uint64_t> filling_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const NamePolicy>> policies_;  // see name_policy()
  uint64_t policies_generation_ = 0;
  ReceiveBatch recv_batch_;
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

}  // namespace sebpf::dns
