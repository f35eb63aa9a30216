// The DNS proxy on loopback with a backend and an upstream of the test's
// own: what happens when a policy changes between judging an answer and
// learning it (the daemon cannot be made to hit that window on purpose;
// this backend changes the policy at exactly that moment), and how the
// loop waits for answers from quick and slow upstreams.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
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

// Answers every A query with kAnswerAddress, `delay` after it came, until
// destroyed.
class FakeUpstream {
 public:
  explicit FakeUpstream(milliseconds delay) : delay_(delay) {
    fd_ = UniqueFd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
    socklen_t length = sizeof(sin);
    EXPECT_EQ(getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sin), &length), 0);
    port_ = ntohs(sin.sin_port);
    timeval timeout{0, 100'000};
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeUpstream() {
    stop_ = true;
    thread_.join();
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

 private:
  void serve() {
    while (!stop_) {
      uint8_t buf[65536];
      sockaddr_storage peer{};
      socklen_t peer_length = sizeof(peer);
      const ssize_t n = recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer),
                                 &peer_length);
      if (n < 12) continue;
      {
        std::lock_guard lock(mu_);
        queries_by_port_[ntohs(reinterpret_cast<const sockaddr_in&>(peer).sin_port)]++;
        last_query_.assign(buf, buf + n);
      }
      std::this_thread::sleep_for(delay_);
      // The query's header and question turned into a response with one A
      // record whose name points at the question's.
      size_t question_end = 12;
      while (question_end < static_cast<size_t>(n) && buf[question_end] != 0) {
        question_end += 1 + buf[question_end];
      }
      question_end += 5;  // the root label, type and class
      if (question_end > static_cast<size_t>(n)) continue;
      std::vector<uint8_t> answer(buf, buf + question_end);
      answer[2] |= 0x80;  // QR
      answer[3] = 0x80;   // RA, NOERROR
      answer[7] = 1;      // ANCOUNT
      answer[11] = 0;     // ARCOUNT (an OPT the query had is not answered)
      const uint8_t record[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
      answer.insert(answer.end(), std::begin(record), std::end(record));
      sendto(fd_.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&peer),
             peer_length);
    }
  }

  const milliseconds delay_;
  mutable std::mutex mu_;
  std::map<uint16_t, int> queries_by_port_;
  std::vector<uint8_t> last_query_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
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

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const NamePolicy> policy_;
  std::vector<std::shared_ptr<const NamePolicy>> changes_;
  std::atomic<uint64_t> generation_{1};
  std::vector<std::string> learned_;
  int learn_calls_ = 0;
};

class DnsProxyTest : public ::testing::Test {
 protected:
  // Starts an upstream answering after `upstream_delay` and the proxy
  // forwarding to it with `backend`, and opens attachment 1's endpoint on
  // a free loopback port.
  void start(RacingBackend& backend, ProxyConfig config = {},
             milliseconds upstream_delay = milliseconds(0)) {
    upstream_ = std::make_unique<FakeUpstream>(upstream_delay);
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
  // Asks `count` names one after another; each must be answered.
  void ask_each(uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) {
      auto answer = ask("q" + std::to_string(i) + ".example.test");
      ASSERT_TRUE(answer.ok()) << answer.error().message();
      ASSERT_EQ(testing::answer_addresses(answer->message),
                std::vector<std::string>{kAnswerAddress});
    }
  }

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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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
  RacingBackend backend(allowed);
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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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

// A VM's interface readdressed: the endpoint serves its new addresses,
// those it keeps without a pause (their sockets stay: binding them again
// would race the old ones' closing), no longer the address it lost, and
// its counts go on.
TEST_F(DnsProxyTest, AMovedEndpointServesItsNewAddressesAndKeepsCounting) {
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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

// An upstream on the same host answers within microseconds; a loop that
// slept meanwhile would pay a wake-up per answer (tens of microseconds on
// a VM). Waiting for its answers, the loop polls instead: it sleeps once
// per query (waiting for the next), not twice.
TEST_F(DnsProxySpinTest, AQuickUpstreamsAnswersAreTakenWithoutSleeping) {
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
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
  RacingBackend backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(10);
  start(backend, config, milliseconds(2));
  // Polling through every answer: 150 x 2 ms = 30 ticks. A sixteenth of
  // that: about 2.
  EXPECT_LE(loop_ticks_asking(150), 10u) << "the loop polled for longer than its sleep paid for";
}

}  // namespace
}  // namespace sebpf::dns
