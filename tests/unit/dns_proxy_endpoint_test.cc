// The DNS proxy's endpoints: no other socket can take their port; a moved
// endpoint serves its new addresses and finishes what came on the old;
// queries past the in-flight limit wait in the socket and are answered;
// a drain answers what it took in and hands the rest to the next proxy;
// the backend hears which sockets serve each endpoint.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "dns/inherited_sockets.h"
#include "dns_proxy_fixture.h"

namespace sebpf::dns {
namespace {

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

}  // namespace
}  // namespace sebpf::dns
