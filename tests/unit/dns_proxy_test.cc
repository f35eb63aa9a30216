// The DNS proxy on loopback with a backend and an upstream of the test's
// own: what happens when a policy changes between judging an answer and
// learning it (the daemon cannot be made to hit that window on purpose;
// this backend changes the policy at exactly that moment), and how the
// loop waits for answers from quick and slow upstreams.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "dns/inherited_sockets.h"
#include "dns/proxy.h"
#include "support/dns_client.h"
#include "support/dns_loop_stats.h"

namespace sebpf::dns {
namespace {

using datapath::Action;
using datapath::Mode;
using std::chrono::milliseconds;

constexpr char kLoopback[] = "127.0.0.1";
constexpr char kAnswerAddress[] = "203.0.113.7";

// The query's header and question turned into a response with one A
// record (kAnswerAddress) whose name points at the question's; nothing
// when the question does not parse.
std::optional<std::vector<uint8_t>> answer_to(std::span<const uint8_t> query) {
  if (query.size() < 12) return std::nullopt;
  size_t question_end = 12;
  while (question_end < query.size() && query[question_end] != 0) {
    question_end += 1 + query[question_end];
  }
  question_end += 5;  // the root label, type and class
  if (question_end > query.size()) return std::nullopt;
  std::vector<uint8_t> answer(query.begin(), query.begin() + static_cast<long>(question_end));
  answer[2] |= 0x80;  // QR
  answer[3] = 0x80;   // RA, NOERROR
  answer[7] = 1;      // ANCOUNT
  answer[11] = 0;     // ARCOUNT (an OPT the query had is not answered)
  const uint8_t record[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
  answer.insert(answer.end(), std::begin(record), std::end(record));
  return answer;
}

// How the upstream serves DNS over TCP. Either way it reads a
// connection's queries one after another and answers each in turn.
struct TcpBehaviour {
  size_t answers_per_connection = 0;     // then it closes the connection; 0: never
  bool first_connection_silent = false;  // answers nothing on its first connection
};

// Answers every A query with kAnswerAddress, `delay` after it came, over
// UDP and TCP on one port, until destroyed.
class FakeUpstream {
 public:
  explicit FakeUpstream(milliseconds delay, TcpBehaviour tcp = {}) : delay_(delay), tcp_(tcp) {
    // A port free for both: the TCP listener's, taken for UDP too.
    for (int attempt = 0; attempt < 20 && port_ == 0; ++attempt) {
      listener_ = bound_socket(SOCK_STREAM, 0);
      const uint16_t port = port_of(listener_);
      fd_ = bound_socket(SOCK_DGRAM, port);
      if (fd_.valid() && listen(listener_.get(), 64) == 0) port_ = port;
    }
    EXPECT_NE(port_, 0) << "no loopback port free for both UDP and TCP";
    thread_ = std::thread([this] { serve(); });
    tcp_thread_ = std::thread([this] { accept_connections(); });
  }
  ~FakeUpstream() {
    stop_ = true;
    thread_.join();
    tcp_thread_.join();
    for (std::thread& t : connection_threads_) t.join();
  }
  uint16_t port() const { return port_; }
  // How many queries came from each source port.
  std::map<uint16_t, int> queries_by_port() const {
    std::lock_guard lock(mu_);
    return queries_by_port_;
  }
  // The last query that came, as it came.
  std::vector<uint8_t> last_query() const {
    std::lock_guard lock(mu_);
    return last_query_;
  }
  // TCP connections accepted so far, and of those still open.
  int tcp_connections() const { return tcp_connections_.load(); }
  int open_tcp_connections() const { return open_tcp_connections_.load(); }
  // Queries that came over TCP.
  int tcp_queries() const { return tcp_queries_.load(); }
  // While held, UDP queries are kept unanswered; once let go, answered.
  void hold_answers(bool hold) { holding_ = hold; }
  // UDP queries that came.
  int udp_queries() const { return udp_queries_.load(); }

 private:
  // A loopback socket bound to `port` (0: any), whose reads and accepts
  // give up after 100 ms so that the threads notice they are to stop.
  static UniqueFd bound_socket(int type, uint16_t port) {
    UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) return UniqueFd();
    set_read_timeout(fd.get());
    return fd;
  }
  static void set_read_timeout(int fd) {
    timeval timeout{0, 100'000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  static uint16_t port_of(const UniqueFd& fd) {
    sockaddr_in sin{};
    socklen_t length = sizeof(sin);
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &length) != 0) return 0;
    return ntohs(sin.sin_port);
  }

  void serve() {
    while (!stop_) {
      if (!holding_) answer_held();
      uint8_t buf[65536];
      sockaddr_storage peer{};
      socklen_t peer_length = sizeof(peer);
      const ssize_t n = recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer),
                                 &peer_length);
      if (n < 12) continue;
      udp_queries_++;
      {
        std::lock_guard lock(mu_);
        queries_by_port_[ntohs(reinterpret_cast<const sockaddr_in&>(peer).sin_port)]++;
        last_query_.assign(buf, buf + n);
        if (holding_) {
          held_.push_back({std::vector<uint8_t>(buf, buf + n), peer, peer_length});
          continue;
        }
      }
      std::this_thread::sleep_for(delay_);
      answer(std::span(buf, static_cast<size_t>(n)), peer, peer_length);
    }
  }
  void answer(std::span<const uint8_t> query, const sockaddr_storage& peer, socklen_t length) {
    const auto answer = answer_to(query);
    if (!answer) return;
    sendto(fd_.get(), answer->data(), answer->size(), 0, reinterpret_cast<const sockaddr*>(&peer),
           length);
  }
  void answer_held() {
    std::vector<HeldQuery> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (const HeldQuery& q : held) answer(q.query, q.peer, q.peer_length);
  }

  void accept_connections() {
    while (!stop_) {
      UniqueFd connection(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!connection) continue;
      const int number = tcp_connections_++;
      open_tcp_connections_++;
      set_read_timeout(connection.get());
      connection_threads_.emplace_back([this, number, fd = std::move(connection)]() mutable {
        serve_connection(fd.get(), number);
        fd.reset();
        open_tcp_connections_--;
      });
    }
  }

  void serve_connection(int fd, int number) {
    std::vector<uint8_t> in;
    size_t answered = 0;
    while (!stop_) {
      uint8_t buf[16384];
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n == 0) return;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // look at stop_
      if (n < 0) return;
      in.insert(in.end(), buf, buf + n);
      while (in.size() >= 2 && in.size() >= 2u + (in[0] << 8 | in[1])) {
        const size_t length = in[0] << 8 | in[1];
        const std::vector<uint8_t> query(in.begin() + 2,
                                         in.begin() + 2 + static_cast<long>(length));
        in.erase(in.begin(), in.begin() + 2 + static_cast<long>(length));
        tcp_queries_++;
        if (number == 0 && tcp_.first_connection_silent) continue;
        std::this_thread::sleep_for(delay_);
        auto answer = answer_to(query);
        if (!answer) continue;
        const uint8_t prefix[] = {static_cast<uint8_t>(answer->size() >> 8),
                                  static_cast<uint8_t>(answer->size())};
        answer->insert(answer->begin(), std::begin(prefix), std::end(prefix));
        if (send(fd, answer->data(), answer->size(), MSG_NOSIGNAL) < 0) return;
        if (++answered == tcp_.answers_per_connection) {
          count_unread_queries(fd, in);
          return;  // closed with the thread's fd
        }
      }
    }
  }

  // Counts the complete queries that came on the connection but were not
  // served (all of `in`, and what is waiting in the socket): they reached
  // the upstream all the same.
  void count_unread_queries(int fd, std::vector<uint8_t>& in) {
    uint8_t buf[16384];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0;) {
      in.insert(in.end(), buf, buf + n);
    }
    for (size_t at = 0; in.size() - at >= 2 && in.size() - at >= 2u + (in[at] << 8 | in[at + 1]);
         at += 2u + (in[at] << 8 | in[at + 1])) {
      tcp_queries_++;
    }
  }

  const milliseconds delay_;
  const TcpBehaviour tcp_;
  mutable std::mutex mu_;
  std::map<uint16_t, int> queries_by_port_;
  std::vector<uint8_t> last_query_;
  struct HeldQuery {
    std::vector<uint8_t> query;
    sockaddr_storage peer;
    socklen_t peer_length;
  };
  std::vector<HeldQuery> held_;
  std::atomic<bool> holding_{false};
  std::atomic<int> udp_queries_{0};
  UniqueFd fd_, listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> tcp_connections_{0};
  std::atomic<int> open_tcp_connections_{0};
  std::atomic<int> tcp_queries_{0};
  std::thread thread_, tcp_thread_;
  std::vector<std::thread> connection_threads_;  // only touched by tcp_thread_, then joined
};

std::shared_ptr<const NamePolicy> allowlist(std::vector<std::pair<const char*, Action>> rules) {
  auto policy = std::make_shared<NamePolicy>();
  policy->mode = Mode::kAllowlist;
  for (const auto& [name, action] : rules) EXPECT_TRUE(policy->rules.add(name, action).ok());
  return policy;
}

// Holds one attachment's policy and what it learned. The policies in
// `changes` take effect one by one, each just before a learn() call is
// answered, as if a user's change landed between the proxy judging the
// answer and the daemon writing its addresses.
class RacingBackend : public ProxyBackend {
 public:
  explicit RacingBackend(std::shared_ptr<const NamePolicy> policy) : policy_(std::move(policy)) {}

  void change_before_each_learn(std::vector<std::shared_ptr<const NamePolicy>> changes) {
    std::lock_guard lock(mu_);
    changes_ = std::move(changes);
  }
  std::vector<std::string> learned() const {
    std::lock_guard lock(mu_);
    return learned_;
  }
  int learn_calls() const {
    std::lock_guard lock(mu_);
    return learn_calls_;
  }

  std::shared_ptr<const NamePolicy> name_policy(uint64_t) override {
    std::lock_guard lock(mu_);
    return policy_;
  }
  uint64_t policy_generation() const override { return generation_.load(); }
  Result<LearnOutcome> learn(uint64_t, std::span<const LearnedAddress> addresses,
                             uint64_t judged_at) override {
    std::lock_guard lock(mu_);
    ++learn_calls_;
    if (!changes_.empty()) {
      policy_ = changes_.front();
      changes_.erase(changes_.begin());
      generation_++;
    }
    if (judged_at != generation_.load()) return LearnOutcome::kPolicyChanged;
    for (const LearnedAddress& a : addresses) learned_.push_back(a.address.to_string());
    return LearnOutcome::kHeld;
  }
  void report(std::string_view, uint64_t, std::string_view) override {}
  void endpoint_sockets(uint64_t attachment, std::span<const int> fds) override {
    std::lock_guard lock(mu_);
    sockets_[attachment] = std::vector<int>(fds.begin(), fds.end());
  }
  // The sockets last reported for the attachment's endpoint; nullopt if
  // never reported.
  std::optional<std::vector<int>> sockets_of(uint64_t attachment) const {
    std::lock_guard lock(mu_);
    auto it = sockets_.find(attachment);
    if (it == sockets_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const NamePolicy> policy_;
  std::vector<std::shared_ptr<const NamePolicy>> changes_;
  std::atomic<uint64_t> generation_{1};
  std::vector<std::string> learned_;
  int learn_calls_ = 0;
  std::map<uint64_t, std::vector<int>> sockets_;
};

class DnsProxyTest : public ::testing::Test {
 protected:
  // Starts an upstream answering after `upstream_delay` and the proxy
  // forwarding to it with `backend`, and opens attachment 1's endpoint on
  // a free loopback port.
  // The test's backend, owned by the fixture so that it outlives the proxy.
  RacingBackend& make_backend(std::shared_ptr<const NamePolicy> policy) {
    backend_ = std::make_unique<RacingBackend>(std::move(policy));
    return *backend_;
  }
  void start(RacingBackend& backend, ProxyConfig config = {},
             milliseconds upstream_delay = milliseconds(0), TcpBehaviour tcp = {}) {
    upstream_ = std::make_unique<FakeUpstream>(upstream_delay, tcp);
    config.upstreams = {*net::SocketAddress::parse(kLoopback, upstream_->port())};
    auto proxy = DnsProxy::start(config, backend);
    ASSERT_TRUE(proxy.ok()) << proxy.error().message();
    proxy_ = std::move(*proxy);
    for (uint16_t port = 20053; port < 20153; ++port) {
      endpoint_ = *net::SocketAddress::parse(kLoopback, port);
      EndpointSpec spec;
      spec.attachment = 1;
      spec.addresses = {endpoint_};
      if (proxy_->open_endpoint(spec).ok()) return;
    }
    FAIL() << "no free loopback port for the endpoint";
  }
  Result<testing::DnsAnswer> ask(const std::string& name) {
    return testing::dns_query(endpoint_, testing::make_query(name, 1, 0x5eb, 0), false,
                              milliseconds(3000));
  }
  // Sends `count` queries (names q0... of example.test, ids 0...) over one
  // TCP connection back to back, and waits for their answers: each must
  // have its id and kAnswerAddress.
  void ask_pipelined(uint16_t count) {
    auto stream = testing::DnsTcpStream::connect(endpoint_);
    ASSERT_TRUE(stream.ok()) << stream.error().message();
    for (uint16_t id = 0; id < count; ++id) {
      const std::string name = "q" + std::to_string(id) + ".example.test";
      ASSERT_TRUE(stream->send(testing::make_query(name, 1, id, 0)).ok());
    }
    std::vector<bool> answered(count);
    for (uint16_t got = 0; got < count;) {
      auto answers = stream->pump(milliseconds(5000));
      ASSERT_TRUE(answers.ok()) << answers.error().message();
      ASSERT_FALSE(answers->empty()) << "answers after " << got << ": none came";
      for (const Message& m : *answers) {
        ASSERT_LT(m.header.id, count);
        EXPECT_FALSE(answered[m.header.id]) << "two answers to query " << m.header.id;
        answered[m.header.id] = true;
        EXPECT_EQ(m.header.rcode, rcode::kNoError) << "query " << m.header.id;
        EXPECT_EQ(testing::answer_addresses(m), std::vector<std::string>{kAnswerAddress});
        ++got;
      }
    }
  }
  // Asks `count` names one after another; each must be answered.
  void ask_each(uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) {
      auto answer = ask("q" + std::to_string(i) + ".example.test");
      ASSERT_TRUE(answer.ok()) << answer.error().message();
      ASSERT_EQ(testing::answer_addresses(answer->message),
                std::vector<std::string>{kAnswerAddress});
    }
  }

  // Starts the proxy with `config` (allowing example.test) and sends
  // `count` queries at once whose answers the upstream holds: for the
  // tests of dns.max_inflight and what waits past it.
  std::optional<testing::DnsUdpBurst> start_and_send_held_burst(const ProxyConfig& config,
                                                                uint16_t count) {
    start(make_backend(allowlist({{"example.test", Action::kAllow}})), config);
    if (HasFatalFailure()) return std::nullopt;
    return send_burst_answers_held(count);
  }
  // With the upstream holding its answers, `count` queries for
  // q.example.test (ids 0...) sent at once over one UDP socket.
  std::optional<testing::DnsUdpBurst> send_burst_answers_held(uint16_t count) {
    upstream_->hold_answers(true);
    auto burst = testing::DnsUdpBurst::connect(endpoint_);
    if (!burst.ok()) {
      ADD_FAILURE() << burst.error().message();
      return std::nullopt;
    }
    if (auto sent = burst->send("q.example.test", count); !sent.ok()) {
      ADD_FAILURE() << sent.error().message();
      return std::nullopt;
    }
    return std::move(*burst);
  }

  // Declared first, so destroyed last: a loop may call the backend until
  // the proxy is gone.
  std::unique_ptr<RacingBackend> backend_;
  std::unique_ptr<FakeUpstream> upstream_;
  std::unique_ptr<DnsProxy> proxy_;
  net::SocketAddress endpoint_;
};

class DnsProxyRaceTest : public DnsProxyTest {};
class DnsProxySpinTest : public DnsProxyTest {
 protected:
  // The loops' CPU time, in clock ticks, over ask_each(count).
  uint64_t loop_ticks_asking(uint64_t count) {
    const uint64_t before = testing::dns_loop_cpu_ticks(getpid());
    ask_each(count);
    return testing::dns_loop_cpu_ticks(getpid()) - before;
  }
};

TEST_F(DnsProxyRaceTest, ADenyLandingBeforeTheAnswerIsLearnedRefusesIt) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  backend.change_before_each_learn(
      {allowlist({{"example.test", Action::kAllow}, {"www.example.test", Action::kDeny}})});

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kNxDomain);
  EXPECT_TRUE(testing::answer_addresses(answer->message).empty());
  EXPECT_TRUE(backend.learned().empty()) << "an address of a name denied first";
  EXPECT_EQ(proxy_->counters(1)->refused, 1u);
}

TEST_F(DnsProxyRaceTest, AChangeThatStillAllowsTheNameLearnsItOnTheSecondTry) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  backend.change_before_each_learn(
      {allowlist({{"example.test", Action::kAllow}, {"other.test", Action::kDeny}})});

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kNoError);
  EXPECT_EQ(testing::answer_addresses(answer->message), std::vector<std::string>{kAnswerAddress});
  EXPECT_EQ(backend.learned(), std::vector<std::string>{kAnswerAddress});
  EXPECT_EQ(backend.learn_calls(), 2);
}

TEST_F(DnsProxyRaceTest, APolicyThatKeepsChangingGetsServfailNotAnUnjudgedAnswer) {
  const auto allowed = allowlist({{"example.test", Action::kAllow}});
  RacingBackend& backend = make_backend(allowed);
  start(backend);
  backend.change_before_each_learn(std::vector(10, allowed));

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kServFail);
  EXPECT_TRUE(backend.learned().empty());
}

// An off-path forger must guess the port a query left from as well as its
// id: a loop moves its queries to a fresh socket (a fresh random port)
// after 256 of them, and has one such port open per upstream (each open
// port is one more to aim at).
TEST_F(DnsProxyTest, QueriesToAnUpstreamMoveToAFreshPortEvery256) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);  // one loop
  ask_each(600);
  if (HasFatalFailure()) return;
  const std::map<uint16_t, int> ports = upstream_->queries_by_port();
  EXPECT_EQ(ports.size(), 3u);
  int total = 0;
  for (const auto& [port, queries] : ports) {
    EXPECT_LE(queries, 256) << "port " << port;
    total += queries;
  }
  EXPECT_EQ(total, 600);
}

// A workload's query may carry anything in its EDNS options (up to 64 KiB)
// and in flag bits nothing reads: none of it was judged, so none of it
// leaves the host. The upstream gets the question as the client wrote it,
// and the client its answer.
TEST_F(DnsProxyTest, OnlyTheJudgedQuestionReachesTheUpstream) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  std::vector<uint8_t> query = testing::make_query("Www.Example.test", 1, 0x5eb, 0);
  const size_t question_end = query.size();
  query[3] |= 0x40;  // the Z bit
  query[11] = 1;     // ARCOUNT: an OPT of 4096 bytes, DO, and a 2,000-byte option
  const uint8_t opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0x07, 0xd4, 0xfd, 0xe9, 0x07, 0xd0};
  query.insert(query.end(), std::begin(opt), std::end(opt));
  query.insert(query.end(), 2000, 's');

  auto answer = testing::dns_query(endpoint_, query, false, milliseconds(3000));
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(testing::answer_addresses(answer->message), std::vector<std::string>{kAnswerAddress});
  ASSERT_EQ(answer->message.questions.size(), 1u);

  std::vector<uint8_t> expected(query.begin(), query.begin() + static_cast<long>(question_end));
  expected[3] = 0;  // no Z
  const uint8_t bare_opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0};
  expected.insert(expected.end(), std::begin(bare_opt), std::end(bare_opt));
  std::vector<uint8_t> sent = upstream_->last_query();
  ASSERT_EQ(sent.size(), expected.size()) << "the option went upstream";
  sent[0] = expected[0];  // the id is the proxy's own
  sent[1] = expected[1];
  EXPECT_EQ(sent, expected);
}

// Over TCP, an endpoint's queries to an upstream share a connection
// (pipelined, RFC 7766). A connection per query let one workload hold as
// many connections upstream (descriptors, the host's ports to that
// resolver, the resolver's TCP slots) as it had queries in flight.
TEST_F(DnsProxyTest, TcpQueriesShareOneConnectionToTheUpstream) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;  // one loop
  config.upstream_timeout = milliseconds(5000);
  // Slow enough that every query is in flight before the first answer.
  start(backend, config, milliseconds(20));
  ask_pipelined(30);
  if (HasFatalFailure()) return;
  EXPECT_EQ(upstream_->tcp_connections(), 1);
  // Closed once no query waits on it: an idle connection would hold a
  // descriptor, a port and one of the resolver's slots for nothing.
  for (int i = 0; i < 100 && upstream_->open_tcp_connections() > 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(upstream_->open_tcp_connections(), 0) << "a connection stayed open with nothing to ask";
}

// An upstream may close a connection after any answer (a limit of its own
// on queries per connection, a restart): the queries still waiting on it
// are asked again on a fresh one, and every one is answered.
TEST_F(DnsProxyTest, QueriesLeftOnAConnectionTheUpstreamClosedAreAskedAgain) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.upstream_timeout = milliseconds(5000);
  start(backend, config, milliseconds(20), TcpBehaviour{.answers_per_connection = 3});
  ask_pipelined(10);
  if (HasFatalFailure()) return;
  EXPECT_EQ(upstream_->tcp_connections(), 4);
}

// Sending a query again after its connection closed is a query to the
// upstream like any other: it draws on the host's upstream budget. Here
// an upstream closes every connection after one answer, so each query
// left waiting is sent again; the budget (20 a second, half a second of it
// at once) holds the upstream to what it allows, the rest are SERVFAIL.
TEST_F(DnsProxyTest, QueriesSentAgainDrawOnTheUpstreamBudget) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.upstream_timeout = milliseconds(5000);
  config.max_upstream_qps = 20;
  start(backend, config, milliseconds(20), TcpBehaviour{.answers_per_connection = 1});
  auto stream = testing::DnsTcpStream::connect(endpoint_);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  constexpr uint16_t kQueries = 10;  // what the budget lets through at once
  for (uint16_t id = 0; id < kQueries; ++id) {
    const std::string name = "q" + std::to_string(id) + ".example.test";
    ASSERT_TRUE(stream->send(testing::make_query(name, 1, id, 0)).ok());
  }
  int answered = 0, servfail = 0;
  while (answered < kQueries) {
    auto answers = stream->pump(milliseconds(5000));
    ASSERT_TRUE(answers.ok()) << answers.error().message();
    ASSERT_FALSE(answers->empty()) << "answers after " << answered << ": none came";
    for (const Message& m : *answers) servfail += m.header.rcode == rcode::kServFail;
    answered += static_cast<int>(answers->size());
  }
  // Free, the queries sent again would come to 30 more (each sent again
  // up to 4 times); within the budget, the first 10 and what it earns
  // back meanwhile (20 a second: the rounds here take about 0.1 s).
  EXPECT_LE(upstream_->tcp_queries(), 25);
  EXPECT_GT(servfail, 0);
}

// A connection on which nothing comes back (dropped on the way without a
// reset, a resolver stuck) is given up as a whole once a query on it has
// waited its full time: every query on it is asked again on a fresh
// connection, instead of waiting on the silent one a second time.
TEST_F(DnsProxyTest, QueriesOnASilentConnectionAreAskedAgainOnAFreshOne) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.upstream_timeout = milliseconds(300);
  start(backend, config, milliseconds(0), TcpBehaviour{.first_connection_silent = true});
  ask_pipelined(5);
  if (HasFatalFailure()) return;
  EXPECT_EQ(upstream_->tcp_connections(), 2);
}

// A VM's interface readdressed: the endpoint serves its new addresses,
// those it keeps without a pause (their sockets stay: binding them again
// would race the old ones' closing), no longer the address it lost, and
// its counts go on.
// A UDP socket bound with SO_REUSEADDR to a port another socket holds
// with it too shares the port, and Linux gives the newest such socket the
// datagrams; no permission is checked. Any process in the endpoint's
// network namespace (on the host's loopback: a workload of another
// attachment) could so take an endpoint's queries, reading what names its
// workload asks and leaving it unanswered. The endpoint's sockets do not
// share: such a bind fails, and the queries still reach the endpoint.
TEST_F(DnsProxyTest, NoOtherSocketCanTakeAnEndpointsPort) {
  start(make_backend(allowlist({{"example.test", Action::kAllow}})));
  if (HasFatalFailure()) return;
  sockaddr_storage ss;
  const socklen_t len = endpoint_.to_sockaddr(ss);
  std::vector<UniqueFd> takers;
  for (const int type : {SOCK_DGRAM, SOCK_STREAM}) {
    UniqueFd taker(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(taker);
    const int one = 1;
    ASSERT_EQ(setsockopt(taker.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    EXPECT_NE(bind(taker.get(), reinterpret_cast<const sockaddr*>(&ss), len), 0)
        << (type == SOCK_DGRAM ? "udp" : "tcp") << ": another socket shares the endpoint's port";
    EXPECT_EQ(errno, EADDRINUSE);
    takers.push_back(std::move(taker));
  }
  auto answer = ask("q.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(testing::answer_addresses(answer->message), std::vector<std::string>{kAnswerAddress});
}

TEST_F(DnsProxyTest, AMovedEndpointServesItsNewAddressesAndKeepsCounting) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  ask_each(2);
  if (HasFatalFailure()) return;
  const net::SocketAddress first = endpoint_;
  const net::SocketAddress second = *net::SocketAddress::parse("127.0.0.2", first.port());
  EndpointSpec spec;
  spec.attachment = 1;
  spec.addresses = {first, second};
  ASSERT_TRUE(proxy_->move_endpoint(spec).ok());
  ask_each(1);
  endpoint_ = second;
  ask_each(1);
  if (HasFatalFailure()) return;

  spec.addresses = {second};
  ASSERT_TRUE(proxy_->move_endpoint(spec).ok());
  ask_each(1);
  if (HasFatalFailure()) return;
  EXPECT_FALSE(testing::dns_query(first, testing::make_query("gone.example.test", 1, 0x5eb, 0),
                                  false, milliseconds(300))
                   .ok())
      << "still answered on the address it lost";
  EXPECT_EQ(proxy_->counters(1)->answered, 5u);
}

// A VM's interface readdressed while queries wait for their upstream: the
// moved endpoint answers those that came in on an address it keeps (the
// same socket), whose clients would otherwise wait seconds to ask again.
// They go on counting in its in-flight limit, neither twice nor not at all.
TEST_F(DnsProxyTest, QueriesInFlightOnAnAddressAMovedEndpointKeepsAreAnswered) {
  ProxyConfig config;
  config.max_inflight = 4;
  config.threads = 2;
  auto burst = start_and_send_held_burst(config, 4);
  ASSERT_TRUE(burst);
  while (upstream_->udp_queries() < 4) std::this_thread::sleep_for(milliseconds(5));
  EndpointSpec spec;
  spec.attachment = 1;
  spec.addresses = {endpoint_, *net::SocketAddress::parse("127.0.0.2", endpoint_.port())};
  ASSERT_TRUE(proxy_->move_endpoint(spec).ok());
  std::this_thread::sleep_for(milliseconds(50));  // the loops have moved
  auto fifth = testing::DnsUdpBurst::connect(endpoint_);
  ASSERT_TRUE(fifth.ok()) << fifth.error().message();
  ASSERT_TRUE(fifth->send("q.example.test", 1).ok());
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(upstream_->udp_queries(), 4) << "forwarded past max_inflight: the moved endpoint "
                                            "does not count the queries it took on";
  upstream_->hold_answers(false);
  for (auto* queries : {&*burst, &*fifth}) {
    auto answers = queries->collect(milliseconds(2000));
    ASSERT_TRUE(answers.ok()) << answers.error().message();
    for (const auto& answer : *answers) {
      ASSERT_TRUE(answer.has_value()) << "a query in flight at the move was not answered";
      EXPECT_EQ(testing::answer_addresses(*answer), std::vector<std::string>{kAnswerAddress});
    }
  }
  EXPECT_EQ(proxy_->counters(1)->answered, 5u);
}

// The same over TCP: a client connected to an address the moved endpoint
// keeps stays connected, gets the answer it waited for, and asks on.
TEST_F(DnsProxyTest, ATcpClientOfAnAddressAMovedEndpointKeepsIsServedOn) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend, ProxyConfig{}, milliseconds(300));
  auto stream = testing::DnsTcpStream::connect(endpoint_);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  ASSERT_TRUE(stream->send(testing::make_query("q0.example.test", 1, 1, 0)).ok());
  (void)stream->pump(milliseconds(100));  // sent; its answer is 300 ms away
  EndpointSpec spec;
  spec.attachment = 1;
  spec.addresses = {endpoint_, *net::SocketAddress::parse("127.0.0.2", endpoint_.port())};
  ASSERT_TRUE(proxy_->move_endpoint(spec).ok());
  // The ids of the next answers to come, within 2 s.
  const auto next_answer_ids = [&] {
    std::vector<uint16_t> ids;
    for (int i = 0; i < 20 && ids.empty(); ++i) {
      auto read = stream->pump(milliseconds(100));
      if (!read.ok()) {
        ADD_FAILURE() << read.error().message();
        break;
      }
      for (const dns::Message& answer : *read) ids.push_back(answer.header.id);
    }
    return ids;
  };
  EXPECT_EQ(next_answer_ids(), std::vector<uint16_t>{1})
      << "the query in flight at the move was not answered";
  ASSERT_TRUE(stream->send(testing::make_query("q1.example.test", 1, 2, 0)).ok());
  EXPECT_EQ(next_answer_ids(), std::vector<uint16_t>{2})
      << "the connection was not served after the move";
}

// Past dns.max_inflight an endpoint is not read from: the queries wait in
// its socket, none dropped, and each is answered as answers make room,
// whichever loop took the queries before it.
TEST_F(DnsProxyTest, QueriesPastTheInFlightLimitWaitInTheSocketAndAreAllAnswered) {
  ProxyConfig config;
  config.max_inflight = 4;
  config.threads = 2;
  constexpr uint16_t kQueries = 40;
  auto burst = start_and_send_held_burst(config, kQueries);
  ASSERT_TRUE(burst);
  std::this_thread::sleep_for(milliseconds(300));  // under the upstream timeout: no retry
  EXPECT_EQ(upstream_->udp_queries(), 4) << "forwarded past max_inflight";
  upstream_->hold_answers(false);
  auto answers = burst->collect(milliseconds(10000));
  ASSERT_TRUE(answers.ok()) << answers.error().message();
  for (uint16_t id = 0; id < kQueries; ++id) {
    ASSERT_TRUE((*answers)[id].has_value()) << "query " << id << " was not answered";
    EXPECT_EQ(testing::answer_addresses(*(*answers)[id]), std::vector<std::string>{kAnswerAddress});
  }
  const auto counters = proxy_->counters(1);
  EXPECT_EQ(counters->rate_limited, 0u);
  EXPECT_EQ(counters->forwarded, kQueries);
}

// An endpoint moved (its interface's addresses changed) while its socket
// waited for room: the moved endpoint serves that socket (a duplicate of
// it) at once, so the queries waiting in it are answered, and nothing of
// the old endpoint is left waiting for room, where it would wake its loop
// every millisecond (kRoomRecheck) for as long as the endpoint lives.
TEST_F(DnsProxyTest, AnEndpointMovedWhileItsSocketWaitedForRoomLeavesTheLoopsAsleep) {
  ProxyConfig config;
  config.max_inflight = 4;
  config.threads = 2;
  constexpr uint16_t kQueries = 40;
  auto burst = start_and_send_held_burst(config, kQueries);
  ASSERT_TRUE(burst);
  while (upstream_->udp_queries() < 4) std::this_thread::sleep_for(milliseconds(5));
  EndpointSpec spec;
  spec.attachment = 1;
  spec.addresses = {endpoint_};
  ASSERT_TRUE(proxy_->move_endpoint(spec).ok());
  upstream_->hold_answers(false);
  // The 4 in flight came in on the socket the moved endpoint keeps, and
  // the rest wait in it: all are answered.
  auto answers = burst->collect(milliseconds(1500));
  ASSERT_TRUE(answers.ok()) << answers.error().message();
  EXPECT_EQ(std::count_if(answers->begin(), answers->end(), [](const auto& a) { return a; }),
            kQueries);

  std::this_thread::sleep_for(milliseconds(50));
  const uint64_t before = testing::dns_loop_wakeups(getpid());
  ASSERT_GT(before, 0u) << "the loop threads are found by name";
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_LE(testing::dns_loop_wakeups(getpid()) - before, 10u)
      << "an idle loop woke up again and again";
}

// Over TCP too: a client's queries past dns.max_inflight wait, unread, and
// are answered as room comes (they were answered SERVFAIL), be it made by
// the client's own answers or by others'.
TEST_F(DnsProxyTest, TcpQueriesPastTheInFlightLimitWaitAndAreAllAnswered) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.max_inflight = 2;
  config.threads = 2;
  start(backend, config, milliseconds(2));  // answers one at a time
  ask_pipelined(20);

  // A client with nothing in flight, whose room other clients' answers make.
  auto burst = send_burst_answers_held(10);
  ASSERT_TRUE(burst);
  while (upstream_->udp_queries() < 2) std::this_thread::sleep_for(milliseconds(5));
  auto stream = testing::DnsTcpStream::connect(endpoint_);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  ASSERT_TRUE(stream->send(testing::make_query("tcp.example.test", 1, 7, 0)).ok());
  std::this_thread::sleep_for(milliseconds(50));
  upstream_->hold_answers(false);
  auto answer = stream->pump(milliseconds(5000));
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  ASSERT_EQ(answer->size(), 1u) << "the waiting TCP query was not answered";
  EXPECT_EQ(testing::answer_addresses(answer->front()), std::vector<std::string>{kAnswerAddress});
  auto answers = burst->collect(milliseconds(5000));
  ASSERT_TRUE(answers.ok()) << answers.error().message();
  EXPECT_TRUE(
      std::all_of(answers->begin(), answers->end(), [](const auto& a) { return a.has_value(); }));
  EXPECT_EQ(proxy_->counters(1)->rate_limited, 0u);
}

// What the socket cannot hold the kernel drops, unread: counted, so that
// an operator sees the queries a workload lost (every query is answered or
// counted there).
TEST_F(DnsProxyTest, QueriesTheSocketCouldNotHoldAreCountedAsDroppedUnread) {
  ProxyConfig config;
  config.max_inflight = 1;
  config.receive_buffer_bytes = 4096;  // a few queries
  constexpr uint16_t kQueries = 40;
  auto burst = start_and_send_held_burst(config, kQueries);
  ASSERT_TRUE(burst);
  std::this_thread::sleep_for(milliseconds(100));
  upstream_->hold_answers(false);
  auto answers = burst->collect(milliseconds(2000));
  ASSERT_TRUE(answers.ok()) << answers.error().message();
  const auto answered = static_cast<uint64_t>(
      std::count_if(answers->begin(), answers->end(), [](const auto& a) { return a.has_value(); }));
  const auto counters = proxy_->counters(1);
  EXPECT_GT(counters->dropped_unread, 0u);
  EXPECT_EQ(answered + counters->dropped_unread, kQueries);
  EXPECT_EQ(counters->answered, answered);
}

// A stop or a reload drains the proxy: queries taken in are answered (a
// slow upstream's too), while new ones wait in the endpoint's socket.
TEST_F(DnsProxyTest, ADrainAnswersTheQueriesTakenInAndLeavesNewOnesInTheSocket) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend, {}, milliseconds(300));
  std::optional<Result<testing::DnsAnswer>> in_flight;
  std::thread asker([&] { in_flight = ask("slow.example.test"); });
  while (proxy_->counters(1)->forwarded == 0) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_TRUE(proxy_->drain());
  asker.join();
  ASSERT_TRUE(in_flight->ok()) << in_flight->error().message();
  EXPECT_EQ(testing::answer_addresses((*in_flight)->message),
            std::vector<std::string>{kAnswerAddress});
  EXPECT_EQ(backend.learned(), std::vector<std::string>{kAnswerAddress})
      << "learned before it was released";
  EXPECT_FALSE(testing::dns_query(endpoint_, testing::make_query("late.example.test", 1), false,
                                  milliseconds(300))
                   .ok())
      << "a query after the drain was taken";
}

// A TCP client that keeps asking does not hold a drain open (until the
// upstreams' timeouts, and then with queries dropped): its further queries
// are left unread.
TEST_F(DnsProxyTest, ADrainIsNotHeldOpenByATcpClientThatKeepsAsking) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend, {}, milliseconds(10));  // answers one at a time: some always in flight
  auto stream = testing::DnsTcpStream::connect(endpoint_);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  std::atomic<bool> stop{false};
  std::thread asker([&] {
    for (uint16_t id = 0; !stop; ++id) {
      if (!stream->send(testing::make_query("q.example.test", 1, id, 0)).ok()) return;
      (void)stream->pump(milliseconds(1));
    }
  });
  while (proxy_->counters(1)->answered < 10) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_TRUE(proxy_->drain()) << "queries dropped at the drain's deadline";
  stop = true;
  asker.join();
}

// A reload: the new process's proxy is handed the old one's sockets and
// serves its endpoint on them, the queries that waited meanwhile included.
TEST_F(DnsProxyTest, AProxyHandedTheSocketsOfOneThatDrainedAnswersWhatWaitedInThem) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  ask_each(1);
  if (HasFatalFailure()) return;
  auto sockets = proxy_->duplicate_endpoint_sockets();
  ASSERT_TRUE(sockets.ok()) << sockets.error().message();
  EXPECT_EQ(sockets->size(), 2u) << "the endpoint's UDP socket and TCP listener";
  EXPECT_TRUE(proxy_->drain());
  std::optional<Result<testing::DnsAnswer>> waited;
  std::thread asker([&] { waited = ask("waited.example.test"); });
  std::this_thread::sleep_for(milliseconds(100));
  proxy_.reset();

  std::vector<std::string> rejected;
  auto inherited = std::make_unique<InheritedSockets>(std::move(*sockets), rejected);
  EXPECT_TRUE(rejected.empty());
  ProxyConfig config;
  config.upstreams = {*net::SocketAddress::parse(kLoopback, upstream_->port())};
  auto next = DnsProxy::start(config, backend, std::move(inherited));
  ASSERT_TRUE(next.ok()) << next.error().message();
  proxy_ = std::move(*next);
  EndpointSpec spec;
  spec.attachment = 1;
  spec.addresses = {endpoint_};
  ASSERT_TRUE(proxy_->open_endpoint(spec).ok());
  EXPECT_EQ(proxy_->close_unclaimed_sockets(), 0u) << "both sockets taken";
  asker.join();
  ASSERT_TRUE(waited->ok()) << "the query sent while no proxy served: "
                            << waited->error().message();
  EXPECT_EQ(testing::answer_addresses((*waited)->message),
            std::vector<std::string>{kAnswerAddress});
  ask_pipelined(2);  // over TCP, on the listener handed over
}

// The backend hears which sockets serve an endpoint (the daemon keeps a
// copy of them in systemd's file descriptor store, for the process after a
// crash): those it opened with, those it moved to, none once closed, and
// nothing when the proxy itself ends (its endpoints are the next
// process's then).
TEST_F(DnsProxyTest, TheBackendHearsWhichSocketsServeAnEndpointUntilItCloses) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  const auto ports_of = [&](uint64_t attachment) {
    std::multiset<uint16_t> ports;
    for (int fd : backend.sockets_of(attachment).value_or(std::vector<int>{})) {
      auto identity = identify_socket(fd);
      EXPECT_TRUE(identity.ok()) << identity.error().message();
      if (identity.ok()) ports.insert(identity->address.port());
    }
    return ports;
  };
  const uint16_t first = endpoint_.port();
  EXPECT_EQ(ports_of(1), (std::multiset<uint16_t>{first, first})) << "its UDP and TCP sockets";

  const auto next = static_cast<uint16_t>(first + 1);
  EndpointSpec moved;
  moved.attachment = 1;
  moved.addresses = {*net::SocketAddress::parse(kLoopback, next)};
  ASSERT_TRUE(proxy_->move_endpoint(moved).ok());
  EXPECT_EQ(ports_of(1), (std::multiset<uint16_t>{next, next}));

  proxy_->close_endpoint(1);
  ASSERT_TRUE(backend.sockets_of(1).has_value());
  EXPECT_TRUE(backend.sockets_of(1)->empty()) << "closed: none";

  EndpointSpec other;
  other.attachment = 2;
  other.addresses = {*net::SocketAddress::parse(kLoopback, static_cast<uint16_t>(first + 2))};
  const Status opened = proxy_->open_endpoint(other);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  proxy_.reset();
  EXPECT_EQ(backend.sockets_of(2)->size(), 2u) << "the proxy's end closed nothing";
}

// An upstream on the same host answers within microseconds; a loop that
// slept meanwhile would pay a wake-up per answer (tens of microseconds on
// a VM). Waiting for its answers, the loop polls instead: it sleeps once
// per query (waiting for the next), not twice.
TEST_F(DnsProxySpinTest, AQuickUpstreamsAnswersAreTakenWithoutSleeping) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(200);  // time for a slow CI machine
  start(backend, config);
  ASSERT_TRUE(ask("warm.example.test").ok());
  // The loop sleeps: it has slept once, and banks the polling time that
  // the queries below use (a sixteenth of 200 ms).
  std::this_thread::sleep_for(milliseconds(200));

  const uint64_t before = testing::dns_loop_wakeups(getpid());
  ASSERT_GT(before, 0u) << "the loop thread is found by name";
  constexpr uint64_t kQueries = 20;
  ask_each(kQueries);
  if (HasFatalFailure()) return;
  EXPECT_LE(testing::dns_loop_wakeups(getpid()) - before, kQueries * 3 / 2)
      << "the loop slept while answers were on their way";
}

// An upstream across a network answers in milliseconds: polling for it
// would burn a CPU for nothing. After a few polls that see no answer the
// loop sleeps at once (but for a rare probe).
TEST_F(DnsProxySpinTest, ASlowUpstreamIsNotPolledFor) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(10);
  start(backend, config, milliseconds(20));
  // Polling for every answer: 30 x 10 ms = 30 ticks. Four misses and a
  // probe or two: about 6.
  EXPECT_LE(loop_ticks_asking(30), 15u)
      << "the loop polled for answers that never come that quickly";
}

// A loop pays for polling with sleep: a busy one, whose CPU time the
// upstream and the clients want, hardly polls. Here each answer takes 2 ms
// (well within answer_spin, so every poll would see it): a loop polling
// for all of them would spend the whole time on it.
TEST_F(DnsProxySpinTest, ALoopPollsForASixteenthOfTheTimeItSleeps) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(10);
  start(backend, config, milliseconds(2));
  // Polling through every answer: 150 x 2 ms = 30 ticks. A sixteenth of
  // that: about 2.
  EXPECT_LE(loop_ticks_asking(150), 10u) << "the loop polled for longer than its sleep paid for";
}

}  // namespace
}  // namespace sebpf::dns
