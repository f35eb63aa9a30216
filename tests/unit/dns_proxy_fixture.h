// The DNS proxy on loopback with a backend and an upstream of the test's
// own, for the proxy's unit tests: an upstream that answers every A query
// (after a delay, holding its answers, or closing TCP connections as told)
// and counts what it got, and a backend whose policy can change between
// the proxy judging an answer and learning its addresses (the daemon
// cannot be made to hit that window on purpose).
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "dns/inherited_sockets.h"
#include "dns/proxy.h"
#include "support/dns_client.h"
#include "support/dns_loop_stats.h"

namespace sebpf::dns {

using datapath::Action;
using datapath::Mode;
using std::chrono::milliseconds;

constexpr char kLoopback[] = "127.0.0.1";
constexpr char kAnswerAddress[] = "203.0.113.7";

// The query's header and question turned into a response with one A
// record (kAnswerAddress) whose name points at the question's; nothing
// when the question does not parse.
std::optional<std::vector<uint8_t>> answer_to(std::span<const uint8_t> query);

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

// A policy of mode allowlist holding `rules`.
std::shared_ptr<const NamePolicy> allowlist(std::vector<std::pair<const char*, Action>> rules);

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

}  // namespace sebpf::dns
