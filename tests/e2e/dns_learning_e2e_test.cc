// What answers teach: addresses belong to the attachment that asked, never
// override a deny, never open the host, the metadata service or the
// internal network, and stay within the attachment's cap and its share of
// the learned-host table.
#include "dns_fixture.h"

namespace sebpf::testing {
namespace {

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
  ASSERT_TRUE(detach(other.id()).ok());
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

}  // namespace
}  // namespace sebpf::testing
