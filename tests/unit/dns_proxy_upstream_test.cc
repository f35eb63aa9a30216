// The DNS proxy and its upstreams: each loop's queries move to a fresh
// port every 256, only the judged question is forwarded, TCP queries share
// one connection, and queries a closed or silent connection left, or sent
// again, are asked again within the upstream budget.
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "dns_proxy_fixture.h"

namespace sebpf::dns {
namespace {

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

}  // namespace
}  // namespace sebpf::dns
