// The per-attachment DNS endpoint end to end: the real daemon, a real
// authoritative upstream (knotd) on a test zone, and a workload in a
// cgroup that resolves names through its endpoint and then connects to
// the addresses it was given, over the test topology.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "daemon_fixture.h"
#include "support/dns_client.h"
#include "support/dns_loop_stats.h"
#include "support/knot_server.h"
#include "support/netns.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kTypeTxt = 16;

// Exit codes of the workload children: a DNS rcode, or no answer at all;
// below 200 the errno of the connection attempt (0: it worked).
constexpr int kRcodeBase = 200;
constexpr int kNoAnswer = 199;

const char* kExampleZone = R"($TTL 300
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
allowed A 198.51.100.2
allowed AAAA 2001:db8::2
allowed TXT "hello"
denied.allowed A 198.51.100.3
other A 198.51.100.3
www.allowed CNAME web.allowed
web.allowed CNAME edge.cdn
edge.cdn A 203.0.113.2
sneaky.allowed CNAME x.blocked
x.blocked A 198.51.100.3
short 1 A 203.0.113.2
metadata.allowed A 169.254.169.254
metadata.allowed AAAA fd00:ec2::254
mapped.allowed AAAA ::ffff:169.254.169.254
nat64.allowed AAAA 64:ff9b::a9fe:a9fe
internal.allowed A 10.1.2.3
host.allowed A 198.51.100.1
host.allowed AAAA 2001:db8::1
later.allowed A 203.0.113.77
*.wild A 198.51.100.90
)"
                           // 40 addresses: more than a client without EDNS may take over UDP.
                           R"(big A 198.51.100.10
big A 198.51.100.11
big A 198.51.100.12
big A 198.51.100.13
big A 198.51.100.14
big A 198.51.100.15
big A 198.51.100.16
big A 198.51.100.17
big A 198.51.100.18
big A 198.51.100.19
big A 198.51.100.20
big A 198.51.100.21
big A 198.51.100.22
big A 198.51.100.23
big A 198.51.100.24
big A 198.51.100.25
big A 198.51.100.26
big A 198.51.100.27
big A 198.51.100.28
big A 198.51.100.29
big A 198.51.100.30
big A 198.51.100.31
big A 198.51.100.32
big A 198.51.100.33
big A 198.51.100.34
big A 198.51.100.35
big A 198.51.100.36
big A 198.51.100.37
big A 198.51.100.38
big A 198.51.100.39
big A 198.51.100.40
big A 198.51.100.41
big A 198.51.100.42
big A 198.51.100.43
big A 198.51.100.44
big A 198.51.100.45
big A 198.51.100.46
big A 198.51.100.47
big A 198.51.100.48
big A 198.51.100.49
)"
                           R"(ten A 198.51.100.50
ten A 198.51.100.51
ten A 198.51.100.52
ten A 198.51.100.53
ten A 198.51.100.54
ten A 198.51.100.55
ten A 198.51.100.56
ten A 198.51.100.57
ten A 198.51.100.58
ten A 198.51.100.59
)"
                           R"(twenty A 198.51.100.60
twenty A 198.51.100.61
twenty A 198.51.100.62
twenty A 198.51.100.63
twenty A 198.51.100.64
twenty A 198.51.100.65
twenty A 198.51.100.66
twenty A 198.51.100.67
twenty A 198.51.100.68
twenty A 198.51.100.69
twenty A 198.51.100.70
twenty A 198.51.100.71
twenty A 198.51.100.72
twenty A 198.51.100.73
twenty A 198.51.100.74
twenty A 198.51.100.75
twenty A 198.51.100.76
twenty A 198.51.100.77
twenty A 198.51.100.78
twenty A 198.51.100.79
)";

v1::Policy dns_policy(const std::vector<std::string>& allow_domains,
                      const std::vector<std::string>& deny_domains = {},
                      const std::vector<std::string>& deny_cidrs = {}) {
  v1::Policy p = make_policy(v1::MODE_ALLOWLIST, {}, deny_cidrs);
  p.set_dns_mode(v1::MODE_ALLOWLIST);
  for (const auto& d : allow_domains) {
    auto* r = p.add_domains();
    r->set_domain(d);
    r->set_action(v1::ACTION_ALLOW);
  }
  for (const auto& d : deny_domains) {
    auto* r = p.add_domains();
    r->set_domain(d);
    r->set_action(v1::ACTION_DENY);
  }
  return p;
}

net::SocketAddress endpoint_of(const v1::Attachment& att) {
  return {*net::IpAddress::parse(att.dns().ipv4()), static_cast<uint16_t>(att.dns().port())};
}

// In the workload: ask `name` through the endpoint, then connect (TCP
// echo) to the first address of the answer.
int resolve_and_connect(const net::SocketAddress& endpoint, const std::string& name, uint16_t type,
                        bool tcp = false) {
  auto answer = dns_query(endpoint, make_query(name, type), tcp);
  if (!answer.ok()) {
    std::fprintf(stderr, "query %s: %s\n", name.c_str(), answer.error().message().c_str());
    return kNoAnswer;
  }
  if (answer->message.header.rcode != dns::rcode::kNoError) {
    return kRcodeBase + answer->message.header.rcode;
  }
  const auto addresses = answer_addresses(answer->message);
  if (addresses.empty()) return kNoAnswer;
  return tcp_echo(addresses.back(), kEchoPort);
}

// connect() of a fresh UDP socket: 0 or the errno. Nothing is sent, but the
// connect hooks run (EPERM when they refuse), then the route lookup.
int udp_connect(const std::string& address, uint16_t port) {
  const net::SocketAddress to(*net::IpAddress::parse(address), port);
  sockaddr_storage ss;
  const socklen_t len = to.to_sockaddr(ss);
  const int fd = socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  const int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

class DnsE2eTest : public DaemonE2eTest {
 protected:
  void SetUp() override {
    DaemonE2eTest::SetUp();
    if (IsSkipped() || HasFailure()) return;
    topo_->start_peer_server();
    const auto port = KnotServer::free_port();
    knot_ = std::make_unique<KnotServer>(
        dir_ + "/knot", port, std::map<std::string, std::string>{{"example.", kExampleZone}});
    if (HasFailure()) return;
  }
  void TearDown() override {
    knot_.reset();
    DaemonE2eTest::TearDown();
  }

  // The daemon, forwarding to knotd (and to `before` first, if given).
  void start_with_upstream(const std::string& config_yaml = "", const std::string& before = "") {
    std::vector<std::string> args;
    if (!before.empty()) args.insert(args.end(), {"--dns-upstream", before});
    args.insert(args.end(), {"--dns-upstream", knot_->address().to_string()});
    if (!config_yaml.empty()) {
      const std::string path = dir_ + "/superebpfd.yaml";
      std::ofstream(path) << config_yaml;
      args.insert(args.end(), {"--config", path});
    }
    start_daemon(args);
  }

  grpc::Status replace_policy(const std::string& id, const v1::Policy& policy) {
    v1::ReplacePolicyRequest req;
    req.set_id(id);
    *req.mutable_policy() = policy;
    grpc::ClientContext ctx;
    v1::Policy out;
    return stub_->ReplacePolicy(&ctx, req, &out);
  }

  grpc::Status add_cidr(const std::string& id, const std::string& cidr, v1::Action action) {
    v1::AddCidrRequest req;
    req.set_id(id);
    req.mutable_rule()->set_cidr(cidr);
    req.mutable_rule()->set_action(action);
    grpc::ClientContext ctx;
    v1::Policy out;
    return stub_->AddCidr(&ctx, req, &out);
  }

  // Resolves each name through the attachment's endpoint and connects to
  // its address, as a workload in the cgroup would.
  void resolve_and_connect_each(const v1::Attachment& att, std::vector<std::string> names) {
    for (const std::string& name : names) {
      ASSERT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint_of(att), name, kTypeA); }), 0)
          << name;
    }
  }

  // After resolve_and_connect_each(att, {"allowed.example",
  // "other.example"}): removing other.example's allow takes back its
  // address only.
  void expect_other_examples_address_alone_taken_back(const v1::Attachment& att) {
    ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example"})).ok());
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM)
        << "other.example's address, its allow removed";
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
        << "allowed.example's address stays";
  }

  // Attaches another cgroup of the test's with `policy`.
  v1::Attachment attach_cgroup_at(const TestCgroup& cgroup, const v1::Policy& policy) {
    v1::AttachRequest req;
    req.set_cgroup_path(cgroup.path());
    *req.mutable_policy() = policy;
    v1::Attachment att;
    const grpc::Status attached = attach(req, &att);
    EXPECT_TRUE(attached.ok()) << attached.error_message();
    return att;
  }
  // As in_cgroup(), in another cgroup of the test's.
  static int in_cgroup_at(const TestCgroup& cgroup, const std::function<int()>& fn) {
    return run_in_child([&] { return cgroup.add_self() ? fn() : 82; });
  }

  v1::Counters get_counters(const std::string& id) {
    v1::GetCountersRequest req;
    req.set_id(id);
    grpc::ClientContext ctx;
    v1::Counters out;
    EXPECT_TRUE(stub_->GetCounters(&ctx, req, &out).ok());
    return out;
  }

  // Whether the attachment's endpoint is (or, within `within`, comes to
  // be) on these addresses ("" for none); `att` is then brought up to date.
  bool endpoint_moves_to(v1::Attachment& att, const std::string& ipv4, const std::string& ipv6,
                         milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    do {
      v1::GetRequest get;
      get.set_id(att.id());
      grpc::ClientContext ctx;
      v1::Attachment now;
      if (stub_->Get(&ctx, get, &now).ok() && now.dns().ipv4() == ipv4 &&
          now.dns().ipv6() == ipv6) {
        att = now;
        return true;
      }
      std::this_thread::sleep_for(milliseconds(10));
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  std::unique_ptr<KnotServer> knot_;
};

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

TEST_F(DnsE2eTest, LearnedAddressesBelongToTheAttachmentThatAsked) {
  start_with_upstream();
  const auto first = attach_cgroup(dns_policy({"allowed.example"}));
  TestCgroup other_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const v1::Attachment second =
      attach_cgroup_at(other_cgroup, dns_policy({"example"}, {"allowed.example"}));
  ASSERT_NE(first.dns().port(), second.dns().port());

  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(first), "allowed.example", kTypeA); }),
      0);
  EXPECT_EQ(
      in_cgroup_at(
          other_cgroup,
          [&] { return resolve_and_connect(endpoint_of(second), "allowed.example", kTypeA); }),
      kRcodeBase + dns::rcode::kNxDomain);
  EXPECT_EQ(in_cgroup_at(other_cgroup, [] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "the first attachment's learned address opens nothing for the second";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup_at(other_cgroup,
                         [&] {
                           auto r =
                               dns_query(endpoint_of(first), make_query("allowed.example", kTypeA));
                           return r.ok() ? 0 : 1;
                         }),
            1)
      << "nor may it use the first's endpoint (and with it the first's domain rules)";
}

// Sends the queries back to back from one UDP socket (so that the
// endpoint reads them, and their answers, together); the rcode of each
// answer by id.
std::map<uint16_t, uint16_t> ask_together(const net::SocketAddress& endpoint,
                                          const std::vector<std::vector<uint8_t>>& queries) {
  std::map<uint16_t, uint16_t> rcodes;
  UniqueFd fd(socket(endpoint.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = endpoint.to_sockaddr(ss);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return rcodes;
  for (const auto& q : queries) (void)!send(fd.get(), q.data(), q.size(), 0);
  uint8_t buf[1500];
  pollfd p{fd.get(), POLLIN, 0};
  while (rcodes.size() < queries.size() && poll(&p, 1, 3000) == 1) {
    const ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    auto answer = dns::parse_message(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    if (answer.ok()) rcodes[answer->header.id] = answer->header.rcode;
  }
  return rcodes;
}

// Past dns.max_learned_hosts, an answer naming a new host is SERVFAIL
// and allows nothing; a host already
// held is still refreshed; another attachment learns as before; and room
// comes back as hosts expire.
TEST_F(DnsE2eTest, AnAttachmentLearnsNoMoreHostsThanItsCap) {
  start_with_upstream("dns:\n  min_ttl_seconds: 1\n  max_learned_hosts: 1\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  const auto ask = [&](const std::string& name) {
    return in_cgroup([&] { return resolve_and_connect(endpoint, name, kTypeA); });
  };
  ASSERT_EQ(ask("short.example"), 0);
  EXPECT_EQ(ask("short.example"), 0) << "a host held is refreshed";
  EXPECT_EQ(ask("allowed.example"), kRcodeBase + dns::rcode::kServFail);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
  // Answers that arrive together are learned together; the one that does
  // not fit must not take the others down with it.
  for (int round = 0; round < 20; ++round) {
    const auto rcodes = ask_together(endpoint, {make_query("short.example", kTypeA, 1),
                                                make_query("allowed.example", kTypeA, 2)});
    ASSERT_EQ(rcodes.size(), 2U) << "round " << round;
    EXPECT_EQ(rcodes.at(1), dns::rcode::kNoError) << "round " << round;
    EXPECT_EQ(rcodes.at(2), dns::rcode::kServFail) << "round " << round;
  }

  TestCgroup other_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const v1::Attachment other = attach_cgroup_at(other_cgroup, dns_policy({"example"}));
  EXPECT_EQ(in_cgroup_at(
                other_cgroup,
                [&] { return resolve_and_connect(endpoint_of(other), "allowed.example", kTypeA); }),
            0)
      << "the other attachment has a cap of its own";

  // short.example's one-second TTL (held a second longer) runs out.
  std::this_thread::sleep_for(milliseconds(2200));
  EXPECT_EQ(ask("allowed.example"), 0);
}

// A cap lowered (across a restart) below what an attachment holds stops
// new hosts, not the refresh of those it holds.
TEST_F(DnsE2eTest, ACapLoweredBelowWhatIsHeldStillRefreshesTheHostsHeld) {
  start_with_upstream("dns:\n  max_learned_hosts: 3\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  const auto rcode_of = [&](const std::string& name) {
    return in_cgroup([&] {
      auto answer = dns_query(endpoint, make_query(name, kTypeA));
      return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
    });
  };
  ASSERT_EQ(rcode_of("allowed.example"), dns::rcode::kNoError);
  ASSERT_EQ(rcode_of("other.example"), dns::rcode::kNoError);
  ASSERT_EQ(rcode_of("www.allowed.example"), dns::rcode::kNoError);
  daemon_->kill9();
  start_with_upstream("dns:\n  max_learned_hosts: 1\n");
  // Past the second a host is held beyond its TTL: the answer needs a write.
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_EQ(rcode_of("allowed.example"), dns::rcode::kNoError) << "held: refreshed";
  EXPECT_EQ(rcode_of("big.example"), dns::rcode::kServFail) << "new: over the share";
}

TEST_F(DnsE2eTest, AnExplicitDenyCidrIsNeverOverriddenByALearnedAddress) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}, {}, {"198.51.100.0/24"}));
  const auto endpoint = endpoint_of(att);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }),
            EPERM)
      << "the name resolves, but the deny CIDR still decides";

  // A deny added after an address was learned removes the learned allow.
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example"})).ok());
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  // A replaced policy keeps what was learned.
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example"})).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  ASSERT_TRUE(add_cidr(att.id(), "198.51.100.0/28", v1::ACTION_DENY).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
}

// Attachments that learn share the table: each may hold its part,
// whatever the others ask. Before, the first to ask took the whole table,
// and every answer naming a new host was SERVFAIL for the others.
TEST_F(DnsE2eTest, AnAttachmentThatAsksMuchCannotTakeTheLearnedTableFromAnother) {
  // 40 hosts: 20 for one attachment that learns (one part is kept free for
  // a policy replace), 13 each for two.
  start_with_upstream(
      "datapath:\n  max_host_rules: 40\n"
      "dns:\n  min_ttl_seconds: 1\n  max_ttl_seconds: 1\n");
  const auto first = attach_cgroup(dns_policy({"example"}));
  TestCgroup other_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const auto attach_other = [&] { return attach_cgroup_at(other_cgroup, dns_policy({"example"})); };
  // Over TCP: big's 40 addresses do not fit a UDP answer without EDNS.
  const auto rcode_of = [](const v1::Attachment& att, const std::string& name) {
    auto answer = dns_query(endpoint_of(att), make_query(name, kTypeA), /*tcp=*/true);
    return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
  };

  v1::Attachment other = attach_other();
  EXPECT_EQ(in_cgroup([&] { return rcode_of(first, "big.example"); }), dns::rcode::kServFail)
      << "40 hosts: past its share";
  EXPECT_EQ(in_cgroup_at(
                other_cgroup,
                [&] { return resolve_and_connect(endpoint_of(other), "allowed.example", kTypeA); }),
            0)
      << "the other attachment's share is there for it";
  // What GetCounters says of it.
  const v1::DnsCounters first_dns = get_counters(first.id()).dns();
  EXPECT_EQ(first_dns.learned_hosts(), 0U);
  EXPECT_EQ(first_dns.learned_hosts_most(), 13U);
  EXPECT_EQ(first_dns.servfail_no_room(), 1U);
  EXPECT_EQ(first_dns.servfail(), 1U);
  const v1::DnsCounters other_dns = get_counters(other.id()).dns();
  EXPECT_EQ(other_dns.learned_hosts(), 1U);
  EXPECT_EQ(other_dns.learned_hosts_most(), 13U);
  EXPECT_EQ(other_dns.servfail_no_room(), 0U);

  // Alone, an attachment's share is larger.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::DetachRequest req;
    req.set_id(other.id());
    v1::DetachResponse resp;
    ASSERT_TRUE(stub_->Detach(&ctx, req, &resp).ok());
  }
  ASSERT_EQ(in_cgroup([&] { return rcode_of(first, "twenty.example"); }), dns::rcode::kNoError);
  EXPECT_EQ(in_cgroup([] { return udp_connect("198.51.100.79", kEchoPort); }), 0);
  EXPECT_EQ(get_counters(first.id()).dns().learned_hosts_most(), 20U);

  // Another comes, which has its share at once. The first now holds past
  // its own: it may not hold its hosts longer (past the second they are
  // written to be held beyond their TTL, an answer needs a write), as the
  // part kept free would go on holding them. Once they run out it learns
  // again, within its share.
  other = attach_other();
  EXPECT_EQ(in_cgroup_at(
                other_cgroup,
                [&] { return resolve_and_connect(endpoint_of(other), "allowed.example", kTypeA); }),
            0);
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_EQ(in_cgroup([&] { return rcode_of(first, "twenty.example"); }), dns::rcode::kServFail)
      << "a refresh past its share, into the part kept free";
  int rcode = kNoAnswer;
  for (int i = 0; i < 30 && rcode != dns::rcode::kNoError; ++i) {
    if (i > 0) std::this_thread::sleep_for(milliseconds(200));
    rcode = in_cgroup([&] { return rcode_of(first, "ten.example"); });
  }
  EXPECT_EQ(rcode, dns::rcode::kNoError) << "its hosts expired: ten fit its share of 13";
}

// A replace writes the attachment's learned hosts into the new rule set
// before the old one goes. With every attachment holding all its share
// asks for, the part kept free still holds them: a policy can always be
// changed (to shut a workload out, say).
TEST_F(DnsE2eTest, APolicyIsReplacedEvenWhenEveryAttachmentHoldsItsShare) {
  start_with_upstream("datapath:\n  max_host_rules: 40\n");  // 13 each for two
  const auto first = attach_cgroup(dns_policy({"example"}));
  TestCgroup other_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const v1::Attachment second = attach_cgroup_at(other_cgroup, dns_policy({"example"}));
  // Each takes what its share lets it: the largest answers first.
  for (const v1::Attachment* att : std::initializer_list<const v1::Attachment*>{&first, &second}) {
    for (const char* name : {"twenty.example", "ten.example", "allowed.example", "other.example",
                             "host.allowed.example", "later.allowed.example"}) {
      (void)dns_query(endpoint_of(*att), make_query(name, kTypeA));
    }
  }
  EXPECT_EQ(in_cgroup([] { return udp_connect("198.51.100.50", kEchoPort); }), 0);
  const grpc::Status replaced =
      replace_policy(first.id(), dns_policy({"example"}, {"blocked.example"}));
  EXPECT_TRUE(replaced.ok()) << replaced.error_message();
  EXPECT_EQ(in_cgroup([] { return udp_connect("198.51.100.50", kEchoPort); }), 0)
      << "the replace kept what the attachment learned";
}

// What taught the learned hosts is kept (to take them back when a rule
// refuses a name later), and a workload picks the names: every name under
// a wildcard, each up to 255 bytes, is a new chain. The daemon keeps at
// most 1 KiB of them per host of the attachment's share; past that (and
// the compaction it may do once a second), answers by new names are
// SERVFAIL, and names already kept still resolve.
TEST_F(DnsE2eTest, NamesAWorkloadMakesUpCannotMakeTheDaemonKeepWithoutBound) {
  // A share of 2 hosts (a table of 4, one part kept free): 2 KiB of chains.
  start_with_upstream("datapath:\n  max_host_rules: 4\n");
  const auto att = attach_cgroup(dns_policy({"example"}));
  const auto endpoint = endpoint_of(att);
  const std::string label(60, 'x');
  const auto name = [&](int i) {
    return std::to_string(i) + label + "." + label + "." + label + ".wild.example";
  };
  std::vector<int> rcodes;
  for (int i = 0; i < 30; ++i) {
    auto answer = dns_query(endpoint, make_query(name(i), kTypeA));
    rcodes.push_back(answer.ok() ? answer->message.header.rcode : kNoAnswer);
  }
  for (int i = 0; i < 9; ++i) EXPECT_EQ(rcodes[i], dns::rcode::kNoError) << name(i);
  EXPECT_NE(std::count(rcodes.begin(), rcodes.end(), dns::rcode::kServFail), 0);
  EXPECT_EQ(std::count(rcodes.begin(), rcodes.end(), kNoAnswer), 0);
  const auto last_answered =
      std::find(rcodes.rbegin(), rcodes.rend(), dns::rcode::kNoError).base() - rcodes.begin() - 1;
  auto again = dns_query(endpoint, make_query(name(static_cast<int>(last_answered)), kTypeA));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->message.header.rcode, dns::rcode::kNoError) << "a name already kept";
  EXPECT_NE(daemon_->log().find("the names that taught its learned hosts take"), std::string::npos);
  EXPECT_EQ(get_counters(att.id()).dns().servfail_no_room(),
            static_cast<uint64_t>(std::count(rcodes.begin(), rcodes.end(), dns::rcode::kServFail)));
}

// In the workload: ask for `name` and, if the answer names `address` (and
// nothing else), connect() a UDP socket to it (nothing is sent): 0 or the
// errno; EPERM when the hooks refuse it.
int resolve_and_udp_connect(const net::SocketAddress& endpoint, const std::string& name,
                            uint16_t type, const std::string& address) {
  auto answer = dns_query(endpoint, make_query(name, type));
  if (!answer.ok()) return kNoAnswer;
  if (answer->message.header.rcode != dns::rcode::kNoError) {
    return kRcodeBase + answer->message.header.rcode;
  }
  if (answer_addresses(answer->message) != std::vector<std::string>{address}) return kNoAnswer;
  return udp_connect(address, 80);
}

// An allowed name is only as trustworthy as its zone: one pointed at the
// cloud's metadata service or the internal network must not open it
// (dns.never_learn, by default the special and private ranges). Only
// connect() calls, which send nothing: these addresses are not the test's.
TEST_F(DnsE2eTest, AnAnswerNamingTheMetadataServiceOrTheInternalNetworkDoesNotOpenIt) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  const struct {
    const char* name;
    uint16_t type;
    const char* address;
  } cases[] = {
      {"metadata.allowed.example", kTypeA, "169.254.169.254"},
      {"metadata.allowed.example", kTypeAaaa, "fd00:ec2::254"},
      {"mapped.allowed.example", kTypeAaaa, "::ffff:169.254.169.254"},
      {"nat64.allowed.example", kTypeAaaa, "64:ff9b::a9fe:a9fe"},  // through NAT64
      {"internal.allowed.example", kTypeA, "10.1.2.3"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(
        in_cgroup([&] { return resolve_and_udp_connect(endpoint, c.name, c.type, c.address); }),
        EPERM)
        << c.name << " " << c.address << ": the answer is released, the address stays closed";
  }
  EXPECT_EQ(in_cgroup([&] {
              return resolve_and_udp_connect(endpoint, "allowed.example", kTypeA, "198.51.100.2");
            }),
            0)
      << "an ordinary address is learned";
  EXPECT_NE(daemon_->log().find(R"("event":"dns_address_not_learned")"), std::string::npos)
      << "the operator can see why";
  EXPECT_EQ(get_counters(att.id()).dns().addresses_not_learned(), std::size(cases))
      << "and how many";

  ASSERT_TRUE(add_cidr(att.id(), "169.254.169.254/32", v1::ACTION_ALLOW).ok());
  EXPECT_NE(in_cgroup([] { return udp_connect("169.254.169.254", 80); }), EPERM)
      << "an explicit allow rule still opens it";
}

// The DNS warnings follow what workloads ask, so they are rate-limited;
// per attachment, so that one workload's flood of a warning (here 30
// answers naming the metadata service) does not hide the same warning of
// another's, and each line says whose it is.
TEST_F(DnsE2eTest, OneWorkloadsFloodOfWarningsDoesNotHideAnothers) {
  start_with_upstream();
  const auto first = attach_cgroup(dns_policy({"allowed.example"}));
  TestCgroup other_cgroup("sebpf-e2e-dnsw-" + topo_->tag());
  const auto other = attach_cgroup_at(other_cgroup, dns_policy({"allowed.example"}));
  const auto ask_metadata = [](const v1::Attachment& att) {
    auto answer = dns_query(endpoint_of(att), make_query("metadata.allowed.example", kTypeA));
    return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
  };
  ASSERT_EQ(in_cgroup([&] {
              for (int i = 0; i < 30; ++i) {
                if (const int rcode = ask_metadata(first); rcode != dns::rcode::kNoError) {
                  return rcode;
                }
              }
              return static_cast<int>(dns::rcode::kNoError);
            }),
            dns::rcode::kNoError);
  ASSERT_EQ(in_cgroup_at(other_cgroup, [&] { return ask_metadata(other); }), dns::rcode::kNoError);

  const auto lines_of = [&](const v1::Attachment& att) {
    size_t lines = 0;
    std::istringstream log(daemon_->log());
    for (std::string line; std::getline(log, line);) {
      if (line.find(R"("event":"dns_address_not_learned")") != std::string::npos &&
          line.find(R"("id":")" + att.id() + '"') != std::string::npos) {
        ++lines;
      }
    }
    return lines;
  };
  EXPECT_GE(lines_of(first), 20U) << "a burst";
  EXPECT_LT(lines_of(first), 30U) << "then one a second";
  EXPECT_EQ(lines_of(other), 1U) << "hidden by the other attachment's flood";
  EXPECT_EQ(get_counters(first.id()).dns().addresses_not_learned(), 30U) << "counted, all";
}

// dns.never_learn replaces the default list; a daemon restarted with a
// range added closes the hosts it had learned there.
TEST_F(DnsE2eTest, NeverLearnIsConfiguredAndAppliesToHostsLearnedBeforeARestart) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  ASSERT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);

  daemon_->kill9();
  start_with_upstream("dns:\n  never_learn: [198.51.100.0/28]\n");
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "learned before the range was listed: closed by the restart";
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }),
            EPERM)
      << "and not learned again";
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "www.allowed.example", kTypeA); }),
            0)
      << "an address outside the list is learned";
  EXPECT_NE(in_cgroup([&] {
              return resolve_and_udp_connect(endpoint, "internal.allowed.example", kTypeA,
                                             "10.1.2.3");
            }),
            EPERM)
      << "the configured list replaces the default one";
  ASSERT_TRUE(add_cidr(att.id(), "198.51.100.2/32", v1::ACTION_ALLOW).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
}

// An answer naming an address of this host must not open the host: a VM
// reaches every service on it through its interface, a container through
// its veth. The test veth's host side (198.51.100.1, 2001:db8::1) stands
// for the host's public addresses, which no configured range covers.
TEST_F(DnsE2eTest, AnAnswerNamingAnAddressOfThisHostDoesNotOpenIt) {
  start_with_upstream("dns:\n  never_learn: []\n");
  topo_->start_host_server();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint, "host.allowed.example", kTypeA); }),
      EPERM);
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint, "host.allowed.example", kTypeAaaa); }),
      EPERM);
  EXPECT_NE(daemon_->log().find("an address of this host"), std::string::npos);

  // An address the host gains later: the learned host is closed, and new
  // answers do not open it. (connect() of a UDP socket sends nothing.)
  const auto later = [&] {
    return in_cgroup([&] {
      return resolve_and_udp_connect(endpoint, "later.allowed.example", kTypeA, "203.0.113.77");
    });
  };
  ASSERT_EQ(later(), 0) << "not an address of this host yet";
  must_run({"ip", "addr", "add", "203.0.113.77/32", "dev", topo_->host_if()});
  int closed = -1;
  for (int i = 0; i < 100 && closed != EPERM; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    closed = in_cgroup([] { return udp_connect("203.0.113.77", 80); });
  }
  EXPECT_EQ(closed, EPERM) << "the host gained it: the learned host is dropped";
  EXPECT_EQ(later(), EPERM) << "and not learned again";
}

// A cgroup in the host's network namespace reaches every service on the
// host's loopback. A deny rule within loopback closes it (a catch-all deny
// does not), and the attachment's DNS endpoint there keeps answering.
TEST_F(DnsE2eTest, ADenyRuleWithinLoopbackClosesTheHostsLoopbackButNotTheEndpoint) {
  start_with_upstream();
  topo_->start_host_server();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}, {}, {"0.0.0.0/0", "::/0"}));
  const auto endpoint = endpoint_of(att);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), 0)
      << "a catch-all deny leaves loopback open";
  ASSERT_TRUE(add_cidr(att.id(), "127.0.0.0/8", v1::ACTION_DENY).ok());
  ASSERT_TRUE(add_cidr(att.id(), "::1/128", v1::ACTION_DENY).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::1", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([&] {
              auto answer = dns_query(endpoint, make_query("allowed.example", kTypeA));
              return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
            }),
            dns::rcode::kNoError)
      << "the endpoint on loopback still answers";
  EXPECT_EQ(in_cgroup([&] {
              // Steered there from an ordinary resolver address, too.
              const net::SocketAddress resolver(*net::IpAddress::parse("203.0.113.53"), 53);
              auto answer = dns_query(resolver, make_query("allowed.example", kTypeA));
              return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
            }),
            dns::rcode::kNoError);
}

// The same for a VM: an answer naming the host side of its interface (or
// any address of the host) does not let the guest reach the host's
// services.
TEST_F(DnsE2eTest, AGuestIsNotLetOntoTheHostByAnAnswerNamingIt) {
  start_with_upstream();
  topo_->start_host_server();
  v1::AttachRequest req;
  req.set_interface_name(topo_->host_if());
  *req.mutable_policy() = dns_policy({"allowed.example"});
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  const auto endpoint = endpoint_of(att);
  EXPECT_NE(topo_->run_in_peer(
                [&] { return resolve_and_connect(endpoint, "host.allowed.example", kTypeA); }),
            0)
      << "198.51.100.1 is the host: its echo service stays out of reach";
  ASSERT_TRUE(add_cidr(att.id(), "198.51.100.1/32", v1::ACTION_ALLOW).ok());
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0)
      << "the host's service itself works: an explicit allow reaches it";
}

// Learned addresses live in the kernel maps: a killed daemon leaves them
// enforcing, and the next one reads them back, so re-applying the policy
// (as a restart does) keeps them.
// A domain rule added later takes back what the names it now refuses
// taught, at once rather than at their TTL: an agent that was allowed a
// name must not keep its addresses for minutes after the operator denied
// it. An address another allowed name also taught stays.
TEST_F(DnsE2eTest, ADomainDenyAddedLaterClosesTheAddressesOnlyThoseNamesTaught) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
  const auto endpoint = endpoint_of(att);
  for (const char* name :
       {"allowed.example", "www.allowed.example", "denied.allowed.example", "other.example"}) {
    ASSERT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, name, kTypeA); }), 0) << name;
  }
  // www.allowed.example -> web.allowed.example -> edge.cdn.example: 203.0.113.2.
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example", "other.example"},
                                                  {"web.allowed.example"}))
                  .ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("203.0.113.2", kEchoPort); }), EPERM)
      << "a deny of a name on the chain closes the address at its end";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "what the allowed parent taught stays";

  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"other.example"})).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "an allow removed closes what only its names taught";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0)
      << "denied.allowed.example and other.example share this address: other.example still "
         "allows it";

  v1::Policy block_all = dns_policy({"other.example"});
  block_all.set_dns_mode(v1::MODE_BLOCK_ALL);
  ASSERT_TRUE(replace_policy(att.id(), block_all).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM)
      << "DNS mode block_all closes every address DNS taught";
}

// A workload denied a name must not keep talking to it over a connection
// it opened before: taking back a host ends the TCP connections opened
// under its learned allow, which otherwise outlive it (as after a TTL).
TEST_F(DnsE2eTest, ADenyEndsTheConnectionsOpenToTheAddressesItTakesBack) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
  const auto endpoint = endpoint_of(att);
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  Child workload([&] {
    char c = 0;
    if (!cgroup_->add_self()) return 80;
    // allowed.example is 198.51.100.2 and 2001:db8::2, other.example
    // 198.51.100.3.
    if (resolve_and_connect(endpoint, "allowed.example", kTypeA) != 0 ||
        resolve_and_connect(endpoint, "allowed.example", kTypeAaaa) != 0 ||
        resolve_and_connect(endpoint, "other.example", kTypeA) != 0) {
      return 81;
    }
    TcpClient to_denied, to_denied6, to_allowed;
    if (to_denied.connect("198.51.100.2", kEchoPort) != 0 || to_denied.echo() != 0) return 82;
    if (to_denied6.connect("2001:db8::2", kEchoPort) != 0 || to_denied6.echo() != 0) return 82;
    if (to_allowed.connect("198.51.100.3", kEchoPort) != 0 || to_allowed.echo() != 0) return 83;
    // UDP flows (QUIC connections), connected and not: the echo server
    // answering each datagram must not keep them open.
    UdpClient udp_to_denied, unconnected_to_denied, udp_to_allowed;
    if (udp_to_denied.connect("198.51.100.2", kEchoPort) != 0 || udp_to_denied.echo() != 0 ||
        unconnected_to_denied.aim("198.51.100.2", kEchoPort) != 0 ||
        unconnected_to_denied.echo() != 0 ||
        udp_to_allowed.connect("198.51.100.3", kEchoPort) != 0 || udp_to_allowed.echo() != 0) {
      return 88;
    }
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) return 84;
    if (to_allowed.echo() != 0 || udp_to_allowed.echo() != 0) return 85;
    if (to_denied.echo() == 0) return 86;
    if (to_denied6.echo() == 0) return 87;
    if (udp_to_denied.echo() == 0 || unconnected_to_denied.echo() == 0) return 89;
    return 0;
  });
  // The parent's copies of the child's ends go, so that a workload that
  // ends early is read as end of file, not waited for forever.
  close(ready[1]);
  close(go[0]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1)
      << "the workload ended with " << workload.wait(std::chrono::seconds(1));
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"other.example"}, {"allowed.example"})).ok());
  ASSERT_EQ(write(go[1], &c, 1), 1);
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0)
      << "85: the connection or UDP flow to a name still allowed broke; 86, 87: a connection "
         "to the denied name's addresses went on; 89: a UDP flow to it did";
  for (int fd : {ready[0], go[1]}) close(fd);
  EXPECT_NE(daemon_->log().find("\"connections_ended\":\"6\""), std::string::npos)
      << "resolve_and_connect's and the test's TCP connection to each address, and the two UDP "
         "flows: "
      << daemon_->log();
}

// Answers judged while a deny is being applied, and learned after its
// revocation pass, must not open the address again: the daemon judges such
// answers again. Without that, answers in flight during the change (it
// holds the manager's lock for milliseconds) reopen the address for its
// TTL.
TEST_F(DnsE2eTest, AnswersInFlightWhileADenyIsAppliedDoNotReopenTheAddress) {
  start_with_upstream();
  const auto allowing = dns_policy({"allowed.example", "other.example"});
  const auto denying = dns_policy({"other.example"}, {"allowed.example"});
  const auto att = attach_cgroup(allowing);
  const auto endpoint = endpoint_of(att);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(replace_policy(att.id(), allowing).ok());
    std::atomic<bool> stop{false};
    std::vector<std::thread> askers;
    for (int i = 0; i < 2; ++i) {
      askers.emplace_back([&] {
        while (!stop) (void)dns_query(endpoint, make_query("allowed.example", kTypeA));
      });
    }
    std::this_thread::sleep_for(milliseconds(30));
    const auto denied = replace_policy(att.id(), denying);
    stop = true;
    for (std::thread& t : askers) t.join();  // every answer they got was learned first
    ASSERT_TRUE(denied.ok());
    ASSERT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
        << "round " << round << ": an answer judged before the deny reopened its address";
  }
}

TEST_F(DnsE2eTest, LearnedAddressesSurviveADaemonRestart) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(att), "allowed.example", kTypeA); }),
      0);
  daemon_->kill9();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "enforcement, learned addresses included, outlives the daemon";
  start_with_upstream();
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example"})).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

// A daemon that stops cleanly writes down what taught its learned hosts,
// so that the next one can still take back exactly what a new rule
// refuses; one that fails to start passes it on.
TEST_F(DnsE2eTest, AfterACleanRestartARuleStillTakesBackOnlyWhatItsNamesTaught) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
  resolve_and_connect_each(att, {"allowed.example", "other.example"});
  if (HasFatalFailure()) return;
  ASSERT_EQ(daemon_->terminate(), 0);
  {
    // A daemon that fails to start after reading what taught the hosts
    // (its API socket's path is a directory with something in it) writes
    // it back for the next one.
    const std::string busy = dir_ + "/busy.sock";
    std::filesystem::create_directories(busy + "/in-the-way");
    DaemonProcess failing(SEBPF_DAEMON_PATH, dir_, pin_dir_,
                          {"--dns-upstream", knot_->address().to_string(), "--socket", busy});
    EXPECT_EQ(failing.wait_exit(std::chrono::seconds(10)), 1);
    EXPECT_NE(failing.log().find("api_failed"), std::string::npos) << failing.log();
  }
  start_with_upstream();
  expect_other_examples_address_alone_taken_back(att);
}

// After a crash nothing says which names taught the hosts read back from
// the kernel: a change that may refuse a name drops them all (fail
// closed), and the workload resolves again.
TEST_F(DnsE2eTest, AfterACrashARuleThatMayRefuseANameDropsTheHostsNothingSaysTaught) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
  ASSERT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(att), "allowed.example", kTypeA); }),
      0);
  daemon_->kill9();
  start_with_upstream();
  ASSERT_TRUE(
      replace_policy(att.id(), dns_policy({"allowed.example", "other.example", "new.example"}))
          .ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "adding an allow refuses nothing: nothing is dropped";
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example"})).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "a host learned before the crash, once an allow is removed";
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(att), "allowed.example", kTypeA); }),
      0)
      << "resolved again";
}

// Each sweep after new learning writes down what taught the hosts, so a
// crash loses only what was learned since the last one: a rule added
// after the restart takes back exactly what the names it refuses taught.
TEST_F(DnsE2eTest, AfterACrashARuleTakesBackOnlyWhatItsNamesTaughtBeforeTheLastSweep) {
  const std::string config = "sweep_interval_seconds: 1\n";
  start_with_upstream(config);
  const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
  resolve_and_connect_each(att, {"allowed.example", "other.example"});
  if (HasFatalFailure()) return;
  const std::string chains_file = dir_ + "/state/learned-chains.pb";
  for (int i = 0; i < 50 && !std::filesystem::exists(chains_file); ++i) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(std::filesystem::exists(chains_file)) << "no sweep wrote what taught the hosts";
  daemon_->kill9();
  start_with_upstream(config);
  expect_other_examples_address_alone_taken_back(att);
}

// The file may be older than the kernel's hosts (a crash after new
// learning, before the next sweep). A host written again since may have
// been taught by a name the file does not know: it counts as untaught, and
// goes at the first change that may refuse a name; a host the kernel
// holds until the instant the file says keeps the file's chains.
TEST_F(DnsE2eTest, AHostLearnedAgainSinceTheChainsFileWasWrittenCountsAsUntaught) {
  start_with_upstream();
  const auto three = dns_policy({"allowed.example", "other.example", "third.example"});
  const auto att = attach_cgroup(three);
  resolve_and_connect_each(att, {"allowed.example", "other.example"});
  if (HasFatalFailure()) return;
  ASSERT_EQ(daemon_->terminate(), 0);
  const std::string chains_file = dir_ + "/state/learned-chains.pb";
  const std::string older = dir_ + "/learned-chains.older";
  std::filesystem::copy_file(chains_file, older);
  start_with_upstream();
  // Past the second a host is held beyond its answer's TTL: asked again,
  // other.example's address is written to the kernel again.
  std::this_thread::sleep_for(milliseconds(1200));
  ASSERT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(att), "other.example", kTypeA); }), 0);
  daemon_->kill9();
  std::filesystem::copy_file(older, chains_file, std::filesystem::copy_options::overwrite_existing);
  start_with_upstream();
  // Removing third.example's allow may refuse a name, but neither of these.
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"allowed.example", "other.example"})).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM)
      << "other.example's address, learned again after the file was written";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "allowed.example's address, held until the instant the file says";
}

// A 1 s TTL: after it, a new connection to the address is refused, while
// a connection opened before goes on (idle connections to long-lived CDN
// addresses must not be cut at TTL expiry).
TEST_F(DnsE2eTest, ALearnedAddressExpiresWithItsTtlExceptForConnectionsStillOpen) {
  start_with_upstream("dns:\n  min_ttl_seconds: 1\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"short.example"})));
  const int result = in_cgroup([&] {
    auto answer = dns_query(endpoint, make_query("short.example", kTypeA));
    if (!answer.ok() ||
        answer_addresses(answer->message) != std::vector<std::string>{"203.0.113.2"})
      return 100;
    TcpClient kept;
    if (kept.connect("203.0.113.2", kEchoPort) != 0 || kept.echo() != 0) return 101;
    UdpClient kept_udp, kept_unconnected;  // a QUIC connection is one UDP flow like these
    if (kept_udp.connect("203.0.113.2", kEchoPort) != 0 || kept_udp.echo() != 0) return 104;
    if (kept_unconnected.aim("203.0.113.2", kEchoPort) != 0 || kept_unconnected.echo() != 0) {
      return 107;
    }
    std::this_thread::sleep_for(milliseconds(2200));
    if (const int fresh = tcp_echo("203.0.113.2", kEchoPort); fresh != EPERM) {
      std::fprintf(stderr, "a new connection after the TTL: %d\n", fresh);
      return 102;
    }
    if (const int fresh = udp_echo("203.0.113.2", kEchoPort, /*connected=*/true); fresh != EPERM) {
      std::fprintf(stderr, "a new UDP flow after the TTL: %d\n", fresh);
      return 105;
    }
    if (const int again = kept.echo(); again != 0) {
      std::fprintf(stderr, "the open connection after the TTL: %d\n", again);
      return 103;
    }
    if (const int again = kept_udp.echo(); again != 0) {
      std::fprintf(stderr, "the UDP flow after the TTL: %d\n", again);
      return 106;
    }
    if (const int again = kept_unconnected.echo(); again != 0) {
      std::fprintf(stderr, "the unconnected UDP flow after the TTL: %d\n", again);
      return 108;
    }
    return 0;
  });
  EXPECT_EQ(result, 0);
}

// A client may use an answer for its whole TTL: asked again half a second
// after the first answer, the address must stay allowed for the second
// answer's TTL, not only the first's. It stays at most a second longer.
TEST_F(DnsE2eTest, AnAddressStaysAllowedForTheWholeTtlOfTheLastAnswerThatNamedIt) {
  start_with_upstream("dns:\n  min_ttl_seconds: 1\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"short.example"})));
  const int result = in_cgroup([&] {
    const auto ask = [&] {
      auto answer = dns_query(endpoint, make_query("short.example", kTypeA));
      return answer.ok() && answer->message.answers.size() == 1 &&
             answer->message.answers[0].ttl == 1 &&
             answer_addresses(answer->message) == std::vector<std::string>{"203.0.113.2"};
    };
    if (!ask()) return 100;
    std::this_thread::sleep_for(milliseconds(500));
    if (!ask()) return 101;
    const auto told = std::chrono::steady_clock::now();
    std::this_thread::sleep_until(told + milliseconds(800));
    if (const int late = tcp_echo("203.0.113.2", kEchoPort); late != 0) {
      std::fprintf(stderr, "within the second answer's TTL: %d\n", late);
      return 102;
    }
    std::this_thread::sleep_until(told + milliseconds(2300));
    if (const int expired = tcp_echo("203.0.113.2", kEchoPort); expired != EPERM) {
      std::fprintf(stderr, "two seconds after the second answer's TTL ran out: %d\n", expired);
      return 103;
    }
    return 0;
  });
  EXPECT_EQ(result, 0);
}

TEST_F(DnsE2eTest, AFailedUpstreamIsSkippedAndNoUpstreamAtAllIsServfail) {
  // Port 9 on loopback: nothing listens, the kernel answers port unreachable.
  start_with_upstream("", "127.0.0.1:9");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  knot_->stop_and_read_query_log();
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeAaaa); }),
            kRcodeBase + dns::rcode::kServFail);
}

// A daemon runs on every host; while its workloads are quiet it should
// cost nothing. A query answered long before its upstream deadline must
// not wake the endpoint's loops when that deadline comes.
TEST_F(DnsE2eTest, AnsweredQueriesDoNotWakeTheEndpointAtTheirDeadlines) {
  start_with_upstream("dns:\n  upstream_timeout_ms: 200\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  for (int i = 0; i < 20; ++i) {
    auto answer = dns_query(endpoint, make_query("allowed.example", kTypeA));
    ASSERT_TRUE(answer.ok()) << answer.error().message();
    std::this_thread::sleep_for(milliseconds(5));  // deadlines a few ms apart
  }
  const uint64_t before = dns_loop_wakeups(daemon_->pid());
  ASSERT_GT(before, 0u) << "the loop threads are found by name";
  std::this_thread::sleep_for(milliseconds(600));  // past every query's deadline
  EXPECT_LE(dns_loop_wakeups(daemon_->pid()) - before, 2u)
      << "20 answered queries' deadlines woke the loops";
}

TEST_F(DnsE2eTest, AnAnswerWhoseAddressCannotBeWrittenIsServfailAndNeverReleased) {
  // Room for one learned host (a table of two, one part kept free): the
  // first answer's address fills it.
  start_with_upstream("datapath:\n  max_host_rules: 2\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "other.example", kTypeA); }),
            kRcodeBase + dns::rcode::kServFail)
      << "the table has no room for the address, so the answer must not reach the client";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0)
      << "addresses already held still resolve";
}

// An answer whose write stops part-way (the table is full) leaves nothing
// of it allowed: else those hosts would be allowed with no answer given,
// and a deny added over them later would not remove them. An attachment
// within its share writes without looking at the table, which can be full
// only when shares shrank as attachments came: in a table of 60 the first
// attachment, alone, takes its 30; a second takes its 20; a third (a share
// of 15) finds room for 9 more hosts, and asks for ten.
TEST_F(DnsE2eTest, AnAnswerOnlyPartlyWrittenLeavesNothingAllowed) {
  start_with_upstream("datapath:\n  max_host_rules: 60\n");
  const auto rcode_of = [](const v1::Attachment& att, const std::string& name) {
    auto answer = dns_query(endpoint_of(att), make_query(name, kTypeA));
    return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
  };
  const auto first = attach_cgroup(dns_policy({"example"}));
  ASSERT_EQ(rcode_of(first, "twenty.example"), dns::rcode::kNoError);
  ASSERT_EQ(rcode_of(first, "ten.example"), dns::rcode::kNoError);

  TestCgroup second_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const auto second = attach_cgroup_at(second_cgroup, dns_policy({"example"}));
  ASSERT_EQ(rcode_of(second, "twenty.example"), dns::rcode::kNoError);
  TestCgroup third_cgroup("sebpf-e2e-dns3-" + topo_->tag());
  const auto third = attach_cgroup_at(third_cgroup, dns_policy({"example"}));
  ASSERT_EQ(rcode_of(third, "allowed.example"), dns::rcode::kNoError);
  EXPECT_EQ(
      in_cgroup_at(third_cgroup,
                   [&] { return resolve_and_connect(endpoint_of(third), "ten.example", kTypeA); }),
      kRcodeBase + dns::rcode::kServFail);
  for (const char* address : {"198.51.100.50", "198.51.100.58", "198.51.100.59"}) {
    EXPECT_EQ(in_cgroup_at(third_cgroup, [&] { return udp_connect(address, kEchoPort); }), EPERM)
        << address << " is allowed though its answer was refused";
  }
  EXPECT_EQ(in_cgroup_at(
                third_cgroup,
                [&] { return resolve_and_connect(endpoint_of(third), "other.example", kTypeA); }),
            0)
      << "the table has room again for an answer that fits";
}

TEST_F(DnsE2eTest, MalformedQueriesGetFormerrAndResponsesAreNotAnswered) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  auto garbage = make_query("allowed.example", kTypeA);
  garbage[5] = 3;  // three questions announced, one present
  auto formerr = dns_query(endpoint, garbage);
  ASSERT_TRUE(formerr.ok()) << formerr.error().message();
  EXPECT_EQ(formerr->message.header.rcode, dns::rcode::kFormErr);
  auto response = make_query("allowed.example", kTypeA);
  response[2] |= 0x80;  // QR: a response, which must not be answered
  EXPECT_FALSE(dns_query(endpoint, response, false, milliseconds(300)).ok());
}

// A zone transfer's answer is a stream of messages that an endpoint, which
// relays one message per query, cannot carry: it is refused as not
// implemented, over UDP and TCP, and never forwarded.
TEST_F(DnsE2eTest, ZoneTransfersAreNotImplementedAndNeverForwarded) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  constexpr uint16_t kTypeIxfr = 251, kTypeAxfr = 252;
  for (const uint16_t type : {kTypeAxfr, kTypeIxfr}) {
    for (const bool tcp : {false, true}) {
      auto answer = dns_query(endpoint, make_query("xfr.example", type), tcp);
      ASSERT_TRUE(answer.ok()) << type << (tcp ? " over TCP: " : " over UDP: ")
                               << answer.error().message();
      EXPECT_EQ(answer->message.header.rcode, dns::rcode::kNotImp) << type << " tcp " << tcp;
    }
  }
  auto plain = dns_query(endpoint, make_query("allowed.example", kTypeTxt));
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->message.header.rcode, dns::rcode::kNoError) << "other types are served";
  const std::string log = knot_->stop_and_read_query_log();
  EXPECT_TRUE(KnotServer::log_has_query(log, "allowed.example")) << "the log is read correctly";
  EXPECT_FALSE(KnotServer::log_has_query(log, "xfr.example")) << "a transfer was forwarded";
}

// Transparent DNS: the workload asks an ordinary resolver (dig, with the
// address of a host that runs no DNS server at all), the socket hooks send
// the query to the attachment's endpoint, and the answer appears to come
// from the resolver that was asked.
TEST_F(DnsE2eTest, DnsToAnyResolverFromACgroupIsAnsweredByItsEndpoint) {
  start_with_upstream();
  attach_cgroup(dns_policy({"allowed.example"}));
  const auto dig = [&](const std::string& server, const std::string& name,
                       const std::string& extra) {
    return in_cgroup([&] {
      const auto r = run_command({"dig", "+tries=1", "+time=2", extra, "@" + server, name, "A"});
      std::fprintf(stderr, "%s\n", r.output.c_str());
      const bool answered = r.output.find("status: NOERROR") != std::string::npos &&
                            r.output.find("198.51.100.2") != std::string::npos;
      const bool from_server =
          r.output.find("SERVER: " + server + "#53(" + server + ")") != std::string::npos;
      const bool refused = r.output.find("status: NXDOMAIN") != std::string::npos;
      return answered && from_server ? 0 : refused && from_server ? 1 : 2;
    });
  };
  EXPECT_EQ(dig("203.0.113.2", "allowed.example", "+notcp"), 0) << "UDP, steered";
  EXPECT_EQ(dig("203.0.113.2", "allowed.example", "+tcp"), 0) << "TCP, steered";
  EXPECT_EQ(dig("2001:db8::3", "allowed.example", "+notcp"), 0) << "IPv6, steered";
  EXPECT_EQ(dig("127.0.0.53", "allowed.example", "+notcp"), 0) << "a host-local resolver too";
  EXPECT_EQ(dig("203.0.113.2", "other.example", "+notcp"), 1) << "and the domain rules apply";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "the steered answer was learned";
  const std::string log = knot_->stop_and_read_query_log();
  EXPECT_FALSE(KnotServer::log_has_query(log, "other.example"));
}

// A container in a network namespace of its own (without IPv6, as runtimes
// often make them) has its DNS steered to its own loopback, where the
// daemon made the endpoint's sockets.
TEST_F(DnsE2eTest, DnsIsSteeredInsideAContainersOwnNetworkNamespace) {
  start_with_upstream();
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  Child workload([&] {
    char c = 0;
    if (!cgroup_->add_self() || unshare(CLONE_NEWNET) != 0) return 80;
    // As container runtimes often do: no IPv6, so no ::1 for the endpoint.
    if (run_command({"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"}).exit_code != 0 ||
        run_command({"sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1"}).exit_code != 0 ||
        run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) {
      return 81;
    }
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) return 82;
    auto answer = dns_query(*net::SocketAddress::parse("203.0.113.2:53", 53),
                            make_query("allowed.example", kTypeA));
    if (!answer.ok()) {
      std::fprintf(stderr, "query: %s\n", answer.error().message().c_str());
      return 83;
    }
    if (answer_addresses(answer->message) != std::vector<std::string>{"198.51.100.2"}) return 84;
    // No route leaves this namespace: a destination the hooks allow fails
    // with ENETUNREACH, one they refuse with EPERM.
    if (udp_connect("198.51.100.2", kEchoPort) != ENETUNREACH) return 85;
    if (udp_connect("198.51.100.3", kEchoPort) != EPERM) return 86;
    return 0;
  });
  // The parent's copies of the child's ends go, so that a workload that
  // ends early is read as end of file, not waited for forever.
  close(ready[1]);
  close(go[0]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1)
      << "the workload ended with " << workload.wait(std::chrono::seconds(1));
  v1::AttachRequest req;
  req.set_pid(workload.pid());
  *req.mutable_policy() = dns_policy({"allowed.example"});
  v1::Attachment att;
  const grpc::Status attached = attach(req, &att);
  ASSERT_TRUE(attached.ok()) << attached.error_message();
  ASSERT_EQ(write(go[1], &c, 1), 1);
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
  for (int fd : {ready[0], go[1]}) close(fd);
  EXPECT_NE(daemon_->log().find("dns_endpoint_in_workload_netns"), std::string::npos);
}

// An unconnected UDP socket sees the answer's source as the resolver it
// sent to (recvfrom), and a TCP socket's peer is that resolver
// (getpeername), although both talked to the endpoint.
TEST_F(DnsE2eTest, SteeredSocketsSeeTheResolverTheyAsked) {
  start_with_upstream();
  attach_cgroup(dns_policy({"allowed.example"}));
  EXPECT_EQ(
      in_cgroup([] {
        const int fd = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(53);
        inet_pton(AF_INET, "198.51.100.3", &to.sin_addr);
        const auto q = make_query("allowed.example", kTypeA);
        if (sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
          return 10;
        timeval tv{2, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        uint8_t buf[512];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        if (recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) < 0)
          return 11;
        return from.sin_addr.s_addr == to.sin_addr.s_addr && from.sin_port == htons(53) ? 0 : 12;
      }),
      0);
  EXPECT_EQ(in_cgroup([] {
              const int fd = socket(AF_INET6, SOCK_STREAM, 0);
              sockaddr_in6 to{};
              to.sin6_family = AF_INET6;
              to.sin6_port = htons(53);
              inet_pton(AF_INET6, "2001:db8::3", &to.sin6_addr);
              if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return 20;
              sockaddr_in6 peer{};
              socklen_t len = sizeof peer;
              if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return 21;
              return memcmp(&peer.sin6_addr, &to.sin6_addr, 16) == 0 && peer.sin6_port == htons(53)
                         ? 0
                         : 22;
            }),
            0);
}

// A VM (interface attachment) cannot ask another resolver: DNS has to go
// through its endpoint (on the host side's address) unless a rule
// explicitly allows that resolver.
TEST_F(DnsE2eTest, AGuestBehindAnInterfaceCannotAskAnotherResolver) {
  start_with_upstream();
  v1::AttachRequest req;
  req.set_interface_name(topo_->host_if());
  *req.mutable_policy() = make_policy(v1::MODE_DENYLIST, {});
  req.mutable_policy()->set_dns_mode(v1::MODE_DENYLIST);
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  ASSERT_EQ(att.dns().ipv4(), "198.51.100.1") << "the host side's address";

  // Stands in for a resolver elsewhere: a UDP socket on port 53 of the
  // host side's other address.
  const int resolver = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(53);
  inet_pton(AF_INET, "203.0.113.1", &at.sin_addr);
  ASSERT_EQ(bind(resolver, reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
  const auto guest_asks_resolver = [&] {
    EXPECT_EQ(topo_->run_in_peer([] {
      const int fd = socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(53);
      inet_pton(AF_INET, "203.0.113.1", &to.sin_addr);
      const auto q = make_query("allowed.example", kTypeA);
      return sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0;
    }),
              0);
    pollfd p{resolver, POLLIN, 0};
    const bool arrived = poll(&p, 1, 500) == 1;
    uint8_t drain[512];
    if (arrived) (void)!recv(resolver, drain, sizeof drain, 0);
    return arrived;
  };
  EXPECT_FALSE(guest_asks_resolver()) << "denylist or not, DNS elsewhere is dropped";
  EXPECT_EQ(topo_->run_in_peer(
                [&] { return resolve_and_connect(endpoint_of(att), "allowed.example", kTypeA); }),
            0)
      << "the endpoint answers the guest (198.51.100.2 is the guest's own address)";
  const net::SocketAddress port53(*net::IpAddress::parse("198.51.100.1"), 53);
  EXPECT_EQ(
      topo_->run_in_peer([&] { return resolve_and_connect(port53, "allowed.example", kTypeA); }), 0)
      << "and on port 53 of that address, as a stub resolver asks";

  ASSERT_TRUE(add_cidr(att.id(), "203.0.113.1/32", v1::ACTION_ALLOW).ok());
  EXPECT_TRUE(guest_asks_resolver()) << "an explicit allow opens that resolver";
  close(resolver);
}

// An orchestrator may attach a VM's tap before it addresses it, or
// readdress (or rename) it later, with the daemon running or not: the
// endpoint, and the one resolver the guest may ask, follow the addresses of
// the host side.
TEST_F(DnsE2eTest, AGuestsEndpointFollowsTheAddressesOfTheHostSide) {
  start_with_upstream();
  std::string dev = topo_->host_if();
  for (const char* cidr : {"198.51.100.1/24", "203.0.113.1/24", "2001:db8::1/64"}) {
    must_run({"ip", "addr", "del", cidr, "dev", dev});
  }
  v1::AttachRequest req;
  req.set_interface_name(dev);
  *req.mutable_policy() = dns_policy({"allowed.example"});
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  EXPECT_EQ(att.dns().ipv4(), "");
  EXPECT_EQ(att.dns().ipv6(), "");
  const auto endpoint_becomes = [&](const std::string& ipv4, const std::string& ipv6,
                                    milliseconds within) {
    return endpoint_moves_to(att, ipv4, ipv6, within);
  };
  const auto guest_resolves = [&](const std::string& endpoint_address, uint16_t type) {
    const net::SocketAddress endpoint(*net::IpAddress::parse(endpoint_address),
                                      static_cast<uint16_t>(att.dns().port()));
    return topo_->run_in_peer(
        [&] { return resolve_and_connect(endpoint, "allowed.example", type); });
  };

  must_run({"ip", "addr", "add", "198.51.100.1/24", "dev", dev});
  ASSERT_TRUE(endpoint_becomes("198.51.100.1", "", milliseconds(2000))) << daemon_->log();
  EXPECT_EQ(guest_resolves("198.51.100.1", kTypeA), 0) << "served once the host side has one";
  EXPECT_NE(daemon_->log().find("dns_endpoint_moved"), std::string::npos);

  // Renamed, it is still the
  // interface attached: its addresses are found, and its endpoint bound,
  // by index.
  const std::string original = dev;
  dev += "r";
  rename_link(original, dev);

  // Until duplicate address detection is done, binding to an IPv6 address
  // fails: it is taken when the kernel announces it usable.
  must_run({"ip", "addr", "add", "2001:db8::1/64", "dev", dev});
  ASSERT_TRUE(endpoint_becomes("198.51.100.1", "2001:db8::1", milliseconds(5000)))
      << daemon_->log();
  EXPECT_EQ(guest_resolves("2001:db8::1", kTypeAaaa), 0) << "over IPv6 too";

  must_run({"ip", "addr", "add", "203.0.113.1/24", "dev", dev});
  must_run({"ip", "addr", "del", "198.51.100.1/24", "dev", dev});
  ASSERT_TRUE(endpoint_becomes("203.0.113.1", "2001:db8::1", milliseconds(2000))) << daemon_->log();
  EXPECT_EQ(guest_resolves("203.0.113.1", kTypeA), 0) << "readdressed";

  daemon_->kill9();
  must_run({"ip", "addr", "add", "198.51.100.1/24", "dev", dev});
  must_run({"ip", "addr", "del", "203.0.113.1/24", "dev", dev});
  start_with_upstream();
  ASSERT_TRUE(endpoint_becomes("198.51.100.1", "2001:db8::1", milliseconds(0))) << daemon_->log();
  EXPECT_EQ(guest_resolves("198.51.100.1", kTypeA), 0) << "readdressed while the daemon was down";
  for (const char* event : {"dns_endpoint_failed", "dns_endpoint_address_skipped"}) {
    EXPECT_EQ(daemon_->log().find(event), std::string::npos)
        << "found at start, before the endpoint is opened on an address gone: " << daemon_->log();
  }
  // Its own name again, for the topology's cleanup.
  run_command({"ip", "link", "set", "dev", dev, "down"});
  run_command({"ip", "link", "set", "dev", dev, "name", original});
}

// A VM's tap is often a port of a bridge (libvirt's default network): the
// host's address is the bridge's, shared by the guests on it. Each guest's
// endpoint is served there, on a port of its own, taking only what comes
// through the bridge: a guest cannot use another's port (it would be under
// that guest's domain rules), and a host routed from elsewhere is not
// served. A tap enslaved or released after the attach is followed.
TEST_F(DnsE2eTest, GuestsOfABridgeAreServedOnItsAddressEachOnAPortOfItsOwn) {
  topo_->start_host_server();
  start_with_upstream();
  const std::string& tag = topo_->tag();
  const std::string a_if = topo_->host_if();
  for (const char* cidr : {"198.51.100.1/24", "203.0.113.1/24", "2001:db8::1/64"}) {
    must_run({"ip", "addr", "del", cidr, "dev", a_if});
  }
  Bridge bridge("sbr" + tag);
  add_address("", bridge.name(), "198.51.100.1/24");
  add_address("", bridge.name(), "2001:db8::1/64");
  // Guest B, a port of the bridge from the start.
  NetNs b_ns("sebpf-gb-" + tag);
  VethPair b_veth("sb" + tag, "sbp" + tag, b_ns);
  add_address(b_ns.name(), b_veth.peer(), "198.51.100.4/24");
  bridge.add_port(b_veth.host());
  // Host C, routed to the bridge's address from an interface of its own.
  NetNs c_ns("sebpf-gc-" + tag);
  VethPair c_veth("sc" + tag, "scp" + tag, c_ns);
  add_address("", c_veth.host(), "2001:db8:c::1/64");
  add_address(c_ns.name(), c_veth.peer(), "2001:db8:c::2/64");
  must_run({"ip", "-n", c_ns.name(), "-6", "route", "add", "default", "via", "2001:db8:c::1"});
  // Guest D, a port of the bridge that is not attached: no program of ours
  // sees what it sends.
  NetNs d_ns("sebpf-gd-" + tag);
  VethPair d_veth("sd" + tag, "sdp" + tag, d_ns);
  add_address(d_ns.name(), d_veth.peer(), "198.51.100.5/24");
  bridge.add_port(d_veth.host());

  // Denylists: the bridge's address is open to the guests, but not the
  // ports of other guests' endpoints there.
  v1::AttachRequest req;
  req.set_interface_name(b_veth.host());
  *req.mutable_policy() = dns_policy({"other.example"});
  req.mutable_policy()->set_mode(v1::MODE_DENYLIST);
  v1::Attachment b;
  ASSERT_TRUE(attach(req, &b).ok());
  EXPECT_EQ(b.dns().ipv4(), "198.51.100.1") << "the bridge's";
  EXPECT_EQ(b.dns().ipv6(), "2001:db8::1");
  // Guest A's interface is attached before it joins the bridge, holding
  // the bridge's IPv4 address itself (a /32: no route): joining changes
  // the device the endpoint's sockets must take queries from, not that
  // address.
  add_address("", a_if, "198.51.100.1/32");
  req.set_interface_name(a_if);
  *req.mutable_policy() = dns_policy({"allowed.example"});
  req.mutable_policy()->set_mode(v1::MODE_DENYLIST);
  v1::Attachment a;
  ASSERT_TRUE(attach(req, &a).ok());
  EXPECT_EQ(a.dns().ipv4(), "198.51.100.1");
  EXPECT_EQ(a.dns().ipv6(), "");
  bridge.add_port(a_if);
  ASSERT_TRUE(endpoint_moves_to(a, "198.51.100.1", "2001:db8::1", milliseconds(2000)))
      << daemon_->log();
  ASSERT_NE(a.dns().port(), b.dns().port());

  // The rcode of an answer, or kNoAnswer within a second.
  const auto asks = [](const net::SocketAddress& endpoint, const std::string& name,
                       bool tcp = false) {
    auto answer = dns_query(endpoint, make_query(name, kTypeA), tcp, milliseconds(1000));
    return answer.ok() ? kRcodeBase + answer->message.header.rcode : kNoAnswer;
  };
  const auto in_b = [&](const std::function<int()>& fn) {
    return run_in_child([&] { return b_ns.enter() ? fn() : 81; });
  };
  const auto in_c = [&](const std::function<int()>& fn) {
    return run_in_child([&] { return c_ns.enter() ? fn() : 81; });
  };
  const auto in_d = [&](const std::function<int()>& fn) {
    return run_in_child([&] { return d_ns.enter() ? fn() : 81; });
  };
  const auto guest_a_resolves = [&] {
    return topo_->run_in_peer(
        [&] { return resolve_and_connect(endpoint_of(a), "allowed.example", kTypeA); });
  };
  EXPECT_EQ(guest_a_resolves(), 0);
  EXPECT_EQ(in_b([&] { return asks(endpoint_of(b), "other.example"); }), kRcodeBase);
  EXPECT_EQ(topo_->run_in_peer([&] { return asks(endpoint_of(b), "other.example"); }), kNoAnswer)
      << "guest A asked B's port";
  EXPECT_EQ(in_b([&] { return asks(endpoint_of(a), "allowed.example"); }), kNoAnswer)
      << "guest B asked A's port";
  // Port 53 of the bridge's address, as a stub resolver asks: each guest
  // reaches its own endpoint there, so its own rules answer.
  const net::SocketAddress bridge53(*net::IpAddress::parse("198.51.100.1"), 53);
  const net::SocketAddress bridge53_v6(*net::IpAddress::parse("2001:db8::1"), 53);
  for (const bool tcp : {false, true}) {
    EXPECT_EQ(topo_->run_in_peer(
                  [&] { return resolve_and_connect(bridge53, "allowed.example", kTypeA, tcp); }),
              0)
        << "guest A on port 53, TCP " << tcp;
    EXPECT_EQ(topo_->run_in_peer([&] {
      return resolve_and_connect(bridge53_v6, "allowed.example", kTypeAaaa, tcp);
    }),
              0)
        << "guest A on port 53 over IPv6, TCP " << tcp;
  }
  EXPECT_EQ(in_b([&] { return asks(bridge53, "other.example"); }), kRcodeBase);
  EXPECT_EQ(in_b([&] { return asks(bridge53, "allowed.example"); }),
            kRcodeBase + dns::rcode::kNxDomain)
      << "guest B's rules answer guest B";
  ASSERT_EQ(in_c([] { return tcp_echo("2001:db8::1", kEchoPort); }), 0) << "C reaches the host";
  const net::SocketAddress b_on_ipv6(*net::IpAddress::parse("2001:db8::1"),
                                     static_cast<uint16_t>(b.dns().port()));
  EXPECT_EQ(in_c([&] { return asks(b_on_ipv6, "other.example"); }), kNoAnswer)
      << "a host routed to the bridge's address was served";
  // Guest D reaches the host, but no endpoint answers it: an attached
  // guest's endpoint (its rate limit, what it learns) is its own.
  ASSERT_EQ(in_d([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0) << "D reaches the host";
  for (const bool tcp : {false, true}) {
    EXPECT_EQ(in_d([&] { return asks(endpoint_of(b), "other.example", tcp); }), kNoAnswer)
        << "a guest that is not attached used B's endpoint, TCP " << tcp;
  }

  daemon_->kill9();
  start_with_upstream();
  EXPECT_EQ(guest_a_resolves(), 0) << "after a restart";
  EXPECT_EQ(in_b([&] { return asks(endpoint_of(a), "allowed.example"); }), kNoAnswer);
  EXPECT_EQ(daemon_->log().find("dns_endpoint_failed"), std::string::npos) << daemon_->log();

  must_run({"ip", "link", "set", "dev", a_if, "nomaster"});
  EXPECT_TRUE(endpoint_moves_to(a, "198.51.100.1", "", milliseconds(2000)))
      << "released, on the tap's own address: " << daemon_->log();
  must_run({"ip", "addr", "del", "198.51.100.1/32", "dev", a_if});
  EXPECT_TRUE(endpoint_moves_to(a, "", "", milliseconds(2000)))
      << "the tap has no address: " << daemon_->log();
  EXPECT_NE(daemon_->log().find(R"("device":")" + a_if + "\""), std::string::npos)
      << "the warning names the device without an address: " << daemon_->log();
}

// UDP answers fit what the client said it can take: 512 bytes without
// EDNS (TC set, so it asks again over TCP, which gets everything), more
// with an EDNS size.
TEST_F(DnsE2eTest, UdpAnswersFitTheClientsSizeAndTcpCarriesTheRest) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"big.example"})));
  auto classic = dns_query(endpoint, make_query("big.example", kTypeA, 0x77, /*udp_size=*/0));
  ASSERT_TRUE(classic.ok()) << classic.error().message();
  EXPECT_TRUE(classic->message.header.tc);
  EXPECT_LE(classic->wire.size(), 512U);
  auto edns = dns_query(endpoint, make_query("big.example", kTypeA, 0x78, 1232));
  ASSERT_TRUE(edns.ok()) << edns.error().message();
  EXPECT_FALSE(edns->message.header.tc);
  EXPECT_EQ(answer_addresses(edns->message).size(), 40U);
  auto tcp = dns_query(endpoint, make_query("big.example", kTypeA, 0x79, 0), /*tcp=*/true);
  ASSERT_TRUE(tcp.ok()) << tcp.error().message();
  EXPECT_EQ(answer_addresses(tcp->message).size(), 40U);
}

// The resident memory of process `pid`, in KiB.
int64_t resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// TCP queries that come one at a time each go upstream on a connection of
// their own (one is closed as soon as no query waits on it). Were the
// daemon to close them with a FIN, each would hold its port for that
// upstream a minute in TIME_WAIT: one workload asking over TCP at its
// dns.max_qps would take the host's ephemeral ports (470 connections a
// second to one resolver), and every TCP connection to it would fail.
// None is left.
TEST_F(DnsE2eTest, TcpQueriesLeaveNoConnectionToTheUpstreamHoldingAPort) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  for (int i = 0; i < 50; ++i) {
    auto answer = dns_query(endpoint, make_query("allowed.example", kTypeA), /*tcp=*/true);
    ASSERT_TRUE(answer.ok()) << answer.error().message();
    ASSERT_EQ(answer->message.header.rcode, dns::rcode::kNoError);
  }
  // /proc/net/tcp: "sl local rem st ...", the remote as 0100007F:PORT.
  char upstream[16];
  std::snprintf(upstream, sizeof upstream, "0100007F:%04X", knot_->address().port());
  int waiting = 0;
  std::ifstream tcp("/proc/net/tcp");
  for (std::string line; std::getline(tcp, line);) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    waiting += remote == upstream && state == "06";  // TCP_TIME_WAIT
  }
  EXPECT_EQ(waiting, 0) << "connections to the upstream in TIME_WAIT";
}

// DNS over TCP may be pipelined (RFC 7766). A client that sends thousands
// of queries without reading an answer is read from only as fast as it
// reads: its queries back up in its own socket, not in the daemon's
// memory. Once it reads, every query has its answer.
TEST_F(DnsE2eTest, APipeliningTcpClientGetsEveryAnswerButCannotMakeTheDaemonHoardThem) {
  start_with_upstream("dns:\n  max_qps: 0\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"big.example"})));
  auto stream = DnsTcpStream::connect(endpoint, /*send_buffer=*/16384);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  const int64_t before = resident_kib(daemon_->pid());
  // An answer (40 addresses) is 20 times the size of its query: 50,000
  // answers held for a client that does not read them would be 35 MB.
  constexpr int kMostQueries = 50000;
  int sent = 0;
  while (sent < kMostQueries) {
    const Status s = stream->send(make_query("big.example", kTypeA, static_cast<uint16_t>(sent)));
    ASSERT_TRUE(s.ok()) << "query " << sent << ": " << s.error().message();
    ++sent;
    if (stream->unsent() > 0 && !stream->wait_writable(milliseconds(1000))) break;
  }
  const int64_t grown = resident_kib(daemon_->pid()) - before;
  EXPECT_LT(sent, kMostQueries) << "the endpoint read on while nobody read its answers";
  if (!kSanitized) {  // ASan holds freed memory back: its RSS grows with any work
    EXPECT_LT(grown, 8 * 1024) << "KiB the daemon grew by for " << sent << " unread answers";
  }

  int answered = 0, full = 0;
  while (answered < sent) {
    auto got = stream->pump(milliseconds(3000));
    ASSERT_TRUE(got.ok()) << "after " << answered << " answers: " << got.error().message();
    if (got->empty()) break;
    for (const dns::Message& m : *got) full += answer_addresses(m).size() == 40;
    answered += static_cast<int>(got->size());
  }
  EXPECT_EQ(answered, sent);
  EXPECT_EQ(full, sent);
}

// A client may send its queries and then shut its sending side (a
// half-close) before it reads: it still gets every answer, and then the
// endpoint closes the connection.
TEST_F(DnsE2eTest, ATcpClientThatHalfClosesStillGetsItsAnswers) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  auto stream = DnsTcpStream::connect(endpoint);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  for (uint16_t id = 0; id < 4; ++id) {
    ASSERT_TRUE(stream->send(make_query("allowed.example", id % 2 ? kTypeAaaa : kTypeA, id)).ok());
  }
  ASSERT_TRUE(stream->finish_sending().ok());
  size_t answered = 0;
  while (answered < 4) {
    auto got = stream->pump(milliseconds(3000));
    ASSERT_TRUE(got.ok()) << "after " << answered << " answers: " << got.error().message();
    if (got->empty()) break;
    answered += got->size();
  }
  EXPECT_EQ(answered, 4U);
  auto after = stream->pump(milliseconds(3000));
  ASSERT_FALSE(after.ok()) << "the connection is still open";
  EXPECT_EQ(after.error().code(), Errc::kUnavailable) << after.error().message();
}

// A TCP client is closed after 10 s in which nothing moved: one that sends
// nothing, and one that stopped reading its answers. One that keeps asking
// stays.
TEST_F(DnsE2eTest, IdleTcpClientsAreClosedAndBusyOnesStay) {
  start_with_upstream("dns:\n  max_qps: 0\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"big.example"})));
  auto silent = DnsTcpStream::connect(endpoint);
  auto deaf = DnsTcpStream::connect(endpoint, /*send_buffer=*/16384);
  auto busy = DnsTcpStream::connect(endpoint);
  ASSERT_TRUE(silent.ok() && deaf.ok() && busy.ok());
  // Enough that the endpoint stops reading it (see the pipelining test).
  for (uint16_t id = 0; id < 1000; ++id) {
    ASSERT_TRUE(deaf->send(make_query("big.example", kTypeA, id)).ok());
  }
  const auto start = std::chrono::steady_clock::now();
  for (uint16_t id = 0; std::chrono::steady_clock::now() - start < milliseconds(12500); ++id) {
    ASSERT_TRUE(busy->send(make_query("big.example", kTypeA, id)).ok());
    auto answers = busy->pump(milliseconds(3000));
    ASSERT_TRUE(answers.ok()) << "the busy client, after "
                              << std::chrono::duration_cast<milliseconds>(
                                     std::chrono::steady_clock::now() - start)
                                     .count()
                              << " ms: " << answers.error().message();
    ASSERT_EQ(answers->size(), 1U);
    std::this_thread::sleep_for(milliseconds(2500));
  }
  const auto closed = [](DnsTcpStream& stream) {
    for (;;) {  // what was sent before the close, then the close
      auto answers = stream.pump(milliseconds(100));
      if (!answers.ok()) return true;
      if (answers->empty()) return false;
    }
  };
  EXPECT_TRUE(closed(*silent)) << "a client that sent nothing for 12 s";
  EXPECT_TRUE(closed(*deaf)) << "a client that read nothing for 12 s";
}

constexpr const char* kSanitizersNeedDescriptors =
    "the sanitizers' runtime needs descriptors of its own: out of them, UBSan's vptr check "
    "cannot read the process's memory map and aborts the daemon";

// The CPU the DNS loops use in a second, once what is waiting has had
// 300 ms to settle: a loop spinning on a ready socket uses all of it.
uint64_t dns_loop_cpu_ticks_in_a_second(pid_t daemon) {
  std::this_thread::sleep_for(milliseconds(300));
  const uint64_t before = dns_loop_cpu_ticks(daemon);
  std::this_thread::sleep_for(milliseconds(1000));
  return dns_loop_cpu_ticks(daemon) - before;
}

// Out of file descriptors, a TCP connection cannot be accepted and stays
// queued: it is taken and closed at once, not left to keep the listener
// ready and the endpoint's loops spinning. With descriptors back, TCP works.
TEST_F(DnsE2eTest, OutOfDescriptorsTcpClientsAreShedWithoutSpinning) {
  if (kSanitized) GTEST_SKIP() << kSanitizersNeedDescriptors;
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  const pid_t pid = daemon_->pid();
  rlimit original{};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, nullptr, &original), 0);
  const auto open_now = static_cast<rlim_t>(std::distance(
      std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"), {}));
  const rlimit tight{open_now + 4, original.rlim_max};  // the soft limit is what counts
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &tight, nullptr), 0);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 20; ++i) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    const socklen_t len = endpoint.to_sockaddr(ss);
    ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);  // the backlog takes it
    clients.push_back(std::move(fd));
  }
  const uint64_t used = dns_loop_cpu_ticks_in_a_second(pid);
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &original, nullptr), 0);
  EXPECT_LT(used, 20U) << "clock ticks the DNS loops used in a second with connections waiting";
  int shed = 0;
  for (const UniqueFd& fd : clients) {
    char byte;
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && recv(fd.get(), &byte, 1, MSG_DONTWAIT) <= 0) shed++;
  }
  EXPECT_GE(shed, 10) << "of 20 connections, with room for 4";
  clients.clear();
  auto answer = dns_query(endpoint, make_query("allowed.example", kTypeA), /*tcp=*/true);
  EXPECT_TRUE(answer.ok()) << answer.error().message();
}

// Out of descriptors with none spare (another thread of the daemon took the
// slot the spare left), a client can be neither taken nor shed. The loops
// must still not spin on the ready listener, and the clients, left waiting,
// are served once descriptors are to be had again.
TEST_F(DnsE2eTest, TcpClientsWaitingForADescriptorAreServedOnceOneIsFree) {
  if (kSanitized) GTEST_SKIP() << kSanitizersNeedDescriptors;
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  const pid_t pid = daemon_->pid();
  rlimit original{};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, nullptr, &original), 0);
  // A descriptor is had below the limit. With the standard three open, a
  // limit of 3 is below every descriptor the daemon opened, the spare's
  // included: closing the spare makes no room.
  for (int fd = 0; fd < 3; ++fd) {
    ASSERT_TRUE(
        std::filesystem::exists("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd)));
  }
  const rlimit none_spare{3, original.rlim_max};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &none_spare, nullptr), 0);
  std::vector<DnsTcpStream> clients;
  for (uint16_t id = 0; id < 5; ++id) {
    auto stream = DnsTcpStream::connect(endpoint);  // the backlog takes it
    ASSERT_TRUE(stream.ok()) << stream.error().message();
    ASSERT_TRUE(stream->send(make_query("allowed.example", kTypeA, id)).ok());
    clients.push_back(std::move(*stream));
  }
  const uint64_t used = dns_loop_cpu_ticks_in_a_second(pid);
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &original, nullptr), 0);
  EXPECT_LT(used, 20U) << "clock ticks the DNS loops used in a second with connections waiting";
  for (DnsTcpStream& client : clients) {
    auto got = client.pump(milliseconds(3000));
    ASSERT_TRUE(got.ok()) << got.error().message();
    ASSERT_EQ(got->size(), 1U) << "a waiting client is answered";
    EXPECT_EQ(got->front().header.rcode, dns::rcode::kNoError);
    EXPECT_FALSE(got->front().answers.empty());
  }
}

// dns.max_upstream_qps: the host's resolvers get no more than it from all
// endpoints together, and a workload flooding its endpoint takes only what
// the others leave: another workload's names still resolve.
TEST_F(DnsE2eTest, AFloodingWorkloadCannotSpendTheOthersPartOfTheUpstreamBudget) {
  start_with_upstream("dns:\n  max_upstream_qps: 40\n");
  const auto flooder = attach_cgroup(dns_policy({"allowed.example"}));
  TestCgroup other_cgroup("sebpf-e2e-dnsu-" + topo_->tag());
  const auto other = attach_cgroup_at(other_cgroup, dns_policy({"allowed.example"}));

  // A thousand queries a second (well within dns.max_qps) for as long as
  // the other workload asks.
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = endpoint_of(flooder).to_sockaddr(ss);
  ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  std::atomic<bool> stop{false};
  const auto started = std::chrono::steady_clock::now();
  std::thread flood([&] {
    uint8_t buf[1500];
    for (uint16_t id = 0; !stop; ++id) {
      const auto q = make_query("allowed.example", kTypeA, id);
      (void)send(fd.get(), q.data(), q.size(), 0);
      while (recv(fd.get(), buf, sizeof buf, 0) > 0) {
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  std::this_thread::sleep_for(milliseconds(1500));  // the flood has had the budget alone
  int resolved = 0;
  for (int i = 0; i < 10; ++i) {
    auto answer = dns_query(endpoint_of(other), make_query("allowed.example", kTypeA));
    resolved += answer.ok() && answer->message.header.rcode == dns::rcode::kNoError &&
                !answer->message.answers.empty();
    std::this_thread::sleep_for(milliseconds(100));
  }
  stop = true;
  flood.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  EXPECT_EQ(resolved, 10) << "the quiet workload's queries went out";
  const v1::DnsCounters flood_dns = get_counters(flooder.id()).dns();
  EXPECT_GT(flood_dns.rate_limited(), 0U);
  EXPECT_LE(flood_dns.forwarded(), static_cast<uint64_t>(40 * seconds) + 40)
      << "past the host's budget (a second of burst)";
  EXPECT_GT(flood_dns.forwarded(), static_cast<uint64_t>(20 * seconds))
      << "what the other left was the flood's";
}

// Per-endpoint query rate limit: a flood over UDP is dropped, not answered
// (an answer would amplify it) and not forwarded.
TEST_F(DnsE2eTest, AFloodBeyondTheQueryRateIsDropped) {
  start_with_upstream("dns:\n  max_qps: 20\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss;
  const socklen_t len = endpoint.to_sockaddr(ss);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
  for (int i = 0; i < 200; ++i) {
    const auto q = make_query("allowed.example", kTypeA, static_cast<uint16_t>(i));
    ASSERT_EQ(send(fd, q.data(), q.size(), 0), static_cast<ssize_t>(q.size()));
  }
  int answers = 0;
  uint8_t buf[1500];
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, 500) == 1 && recv(fd, buf, sizeof buf, 0) > 0) answers++;
  close(fd);
  EXPECT_GE(answers, 15) << "a second's worth passes";
  EXPECT_LE(answers, 30) << "the rest is dropped";

  // Over TCP nobody can be a forged source, and a pipelining client waits
  // for every answer: the queries over the rate get SERVFAIL.
  std::this_thread::sleep_for(milliseconds(1000));  // the bucket fills again
  auto stream = DnsTcpStream::connect(endpoint);
  ASSERT_TRUE(stream.ok()) << stream.error().message();
  for (uint16_t id = 0; id < 200; ++id) {
    ASSERT_TRUE(stream->send(make_query("allowed.example", kTypeA, id)).ok());
  }
  int resolved = 0, servfail = 0;
  while (resolved + servfail < 200) {
    auto got = stream->pump(milliseconds(3000));
    ASSERT_TRUE(got.ok()) << got.error().message();
    if (got->empty()) break;
    for (const dns::Message& m : *got) {
      resolved += m.header.rcode == dns::rcode::kNoError && !m.answers.empty();
      servfail += m.header.rcode == dns::rcode::kServFail && m.questions.size() == 1;
    }
  }
  EXPECT_GE(resolved, 15) << "a second's worth passes";
  EXPECT_LE(resolved, 30);
  EXPECT_EQ(resolved + servfail, 200) << "every query has its answer";
}

// A port of the endpoint range that another program holds is skipped: the
// attachment gets the next one, and its endpoint works.
TEST_F(DnsE2eTest, AnEndpointPortHeldByAnotherProgramIsSkipped) {
  const int squatter = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(20000);  // the first port of the default range
  inet_pton(AF_INET, "127.0.0.1", &at.sin_addr);
  // Connections an earlier test's endpoint closed may linger on the port in
  // TIME_WAIT; a listener holds it all the same.
  const int one = 1;
  setsockopt(squatter, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ASSERT_EQ(bind(squatter, reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
  ASSERT_EQ(listen(squatter, 1), 0);
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  close(squatter);
  EXPECT_NE(att.dns().port(), 20000U);
  EXPECT_EQ(
      in_cgroup([&] { return resolve_and_connect(endpoint_of(att), "allowed.example", kTypeA); }),
      0);
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
  knot_ = std::make_unique<KnotServer>(dir_ + "/knot-race", KnotServer::free_port(),
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
