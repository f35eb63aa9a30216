// Names resolve, and connect, by the attachment's domain rules: what is
// allowed, what is refused before it leaves the host, CNAME chains, rules
// changed through the API, and the race of a client that connects the
// instant it has its answer.
#include "dns_fixture.h"

namespace sebpf::testing {
namespace {

TEST_F(DnsE2eTest, AllowedNameResolvesAndConnectsDeniedNamesNeverReachTheUpstream) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}, {"denied.allowed.example"}));
  const auto endpoint = endpoint_of(att);
  EXPECT_EQ(att.dns().ipv4(), "127.0.0.1");

  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "nothing is reachable before the name is resolved";
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeAaaa); }),
            0)
      << "the AAAA answer's address is learned too";
  EXPECT_EQ(in_cgroup([&] {
              auto txt = dns_query(endpoint, make_query("allowed.example", kTypeTxt));
              return txt.ok() ? static_cast<int>(txt->message.answers.size()) : kNoAnswer;
            }),
            1)
      << "other record types of an allowed name are forwarded";

  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint, "denied.allowed.example", kTypeA); }),
      kRcodeBase + dns::rcode::kNxDomain)
      << "the more specific deny wins";
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "other.example", kTypeA); }),
            kRcodeBase + dns::rcode::kNxDomain)
      << "a name no rule allows is refused in allowlist mode";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  const std::string log = knot_->stop_and_read_query_log();
  EXPECT_TRUE(KnotServer::log_has_query(log, "allowed.example")) << "the log is read correctly";
  EXPECT_FALSE(KnotServer::log_has_query(log, "denied.allowed.example"))
      << "a refused query must never leave the host: it can carry data";
  EXPECT_FALSE(KnotServer::log_has_query(log, "other.example"));
}

// Each endpoint counts what it did, for its attachment alone: an operator
// can see that names were refused, or that upstreams failed.
TEST_F(DnsE2eTest, EachEndpointCountsWhatItDidForItsAttachment) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  TestCgroup other_cgroup("sebpf-e2e-dnsc-" + topo_->tag());
  const v1::Attachment other = attach_cgroup_at(other_cgroup, dns_policy({"example"}));

  ASSERT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  ASSERT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "other.example", kTypeA); }),
            kRcodeBase + dns::rcode::kNxDomain);
  ASSERT_EQ(in_cgroup([&] {
              // A header and no question.
              const std::vector<uint8_t> empty = {0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
              auto answer = dns_query(endpoint, empty);
              return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
            }),
            dns::rcode::kFormErr);

  const v1::Counters counters = get_counters(att.id());
  ASSERT_TRUE(counters.has_dns());
  const v1::DnsCounters& dns = counters.dns();
  EXPECT_EQ(dns.queries(), 3U);
  EXPECT_EQ(dns.forwarded(), 1U);
  EXPECT_EQ(dns.answered(), 1U);
  EXPECT_EQ(dns.answer_addresses(), 1U);
  EXPECT_EQ(dns.refused(), 1U);
  EXPECT_EQ(dns.malformed(), 1U);
  EXPECT_EQ(dns.servfail(), 0U);
  EXPECT_EQ(dns.rate_limited(), 0U);
  EXPECT_EQ(dns.addresses_not_learned(), 0U);
  EXPECT_GE(counters.allowed(), 1U) << "the connection to the learned address";

  const v1::Counters others = get_counters(other.id());
  ASSERT_TRUE(others.has_dns());
  EXPECT_EQ(others.dns().queries(), 0U) << "another attachment's endpoint counted nothing";
}

TEST_F(DnsE2eTest, DnsOverTcpResolvesAndLearns) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  EXPECT_EQ(in_cgroup([&] {
              return resolve_and_connect(endpoint, "allowed.example", kTypeA, /*tcp=*/true);
            }),
            0);
  EXPECT_EQ(in_cgroup([&] {
              return resolve_and_connect(endpoint, "other.example", kTypeA, /*tcp=*/true);
            }),
            kRcodeBase + dns::rcode::kNxDomain);
}

// The endpoint's loops keep the domain rules they fetched; a change through
// the API must still decide the very next query, on every loop (each
// query comes from a fresh socket, so either loop may take it).
TEST_F(DnsE2eTest, DomainRulesChangedThroughTheApiDecideTheNextQuery) {
  start_with_upstream("dns:\n  threads: 2\n");
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  const auto ask = [&](const std::string& name) {
    return in_cgroup([&] { return resolve_and_connect(endpoint, name, kTypeA); });
  };
  constexpr int kTries = 6;
  for (int i = 0; i < kTries; ++i) {
    ASSERT_EQ(ask("allowed.example"), 0);
    ASSERT_EQ(ask("other.example"), kRcodeBase + dns::rcode::kNxDomain);
  }

  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example", "other.example"})).ok());
  for (int i = 0; i < kTries; ++i) {
    EXPECT_EQ(ask("other.example"), 0) << "an allow added is used at once (try " << i << ")";
  }

  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"other.example"}, {"allowed.example"})).ok());
  for (int i = 0; i < kTries; ++i) {
    EXPECT_EQ(ask("allowed.example"), kRcodeBase + dns::rcode::kNxDomain)
        << "a deny added is used at once (try " << i << ")";
  }
}

TEST_F(DnsE2eTest, CnameChainsAreFollowedAndADeniedTargetIsRefused) {
  start_with_upstream();
  const auto endpoint =
      endpoint_of(attach_cgroup(dns_policy({"allowed.example"}, {"blocked.example"})));
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "www.allowed.example", kTypeA); }),
            0)
      << "the address at the end of the chain (in a zone no rule names) is learned";
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint, "sneaky.allowed.example", kTypeA); }),
      kRcodeBase + dns::rcode::kNxDomain)
      << "an allowed name pointing into a denied domain is refused";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

// The race the design exists for: a client that connects the instant it
// has the answer is never refused, because the answer is released only
// after the kernel holds the address. Every name has an address of its
// own (2001:db8:1::/112), so every answer needs a fresh learn. A UDP
// connect() runs the connect6 hook without sending anything. Four clients
// ask at once, so the endpoint's loops (two) see several answers per turn,
// learned together before any is released.
TEST_F(DnsE2eTest, AClientConnectingTheInstantItHasTheAnswerIsNeverRefused) {
  constexpr int kRounds = 10000;
  // One zone of its own, for the race names.
  std::string zone =
      "$TTL 300\n@ SOA ns.example. hostmaster.example. 1 3600 600 86400 60\n"
      "@ NS ns.example.\n";
  char line[96];
  for (int i = 0; i < kRounds; ++i) {
    std::snprintf(line, sizeof line, "r%d AAAA 2001:db8:1::%x\n", i, i + 1);
    zone += line;
  }
  knot_.reset();
  knot_ = std::make_unique<KnotServer>(dir() + "/knot-race", KnotServer::free_port(),
                                       std::map<std::string, std::string>{{"race.example.", zone}});
  ASSERT_FALSE(HasFailure());
  start_with_upstream("dns:\n  max_qps: 0\n  threads: 2\n");  // as fast as it goes
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"race.example"})));
  // Routed into the test namespace, so connect() has a route.
  must_run({"ip", "-6", "route", "add", "2001:db8:1::/112", "dev", topo_->host_if()});

  constexpr int kClients = 4;
  const int result = run_in_child(
      [&] {
        if (!cgroup_->add_self()) return 82;
        std::vector<int> results(kClients, 0);
        std::vector<std::thread> clients;
        for (int c = 0; c < kClients; ++c) {
          clients.emplace_back([&, c] {
            for (int i = c; i < kRounds; i += kClients) {
              const std::string name = "r" + std::to_string(i) + ".race.example";
              auto answer = dns_query(endpoint, make_query(name, kTypeAaaa));
              if (!answer.ok() || answer_addresses(answer->message).size() != 1) {
                std::fprintf(stderr, "round %d: no usable answer\n", i);
                results[c] = kNoAnswer;
                return;
              }
              const int err = udp_connect(answer_addresses(answer->message)[0], kEchoPort);
              if (err != 0) {
                std::fprintf(stderr, "round %d: connect to %s: %s\n", i,
                             answer_addresses(answer->message)[0].c_str(), std::strerror(err));
                results[c] = err;
                return;
              }
            }
          });
        }
        for (std::thread& t : clients) t.join();
        for (const int r : results) {
          if (r != 0) return r;
        }
        return 0;
      },
      std::chrono::seconds(120));
  EXPECT_EQ(result, 0);
  // And a name not resolved is refused, so the test can see a refusal.
  EXPECT_EQ(in_cgroup([] { return udp_connect("2001:db8:1::ffff", kEchoPort); }), EPERM);
}

}  // namespace
}  // namespace sebpf::testing
