// How learned addresses end: taken back by a rule that refuses the names
// that taught them (connections included), across clean restarts and
// crashes, and at the end of their TTL unless a connection still uses them.
#include "dns_fixture.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

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
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
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
    if (!meet.ready_then_wait()) return 84;
    if (to_allowed.echo() != 0 || udp_to_allowed.echo() != 0) return 85;
    if (to_denied.echo() == 0) return 86;
    if (to_denied6.echo() == 0) return 87;
    if (udp_to_denied.echo() == 0 || unconnected_to_denied.echo() == 0) return 89;
    return 0;
  });
  meet.forked();
  ASSERT_TRUE(meet.wait_ready()) << "the workload ended with "
                                 << workload.wait(std::chrono::seconds(1));
  ASSERT_TRUE(replace_policy(att.id(), dns_policy({"other.example"}, {"allowed.example"})).ok());
  ASSERT_TRUE(meet.go());
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0)
      << "85: the connection or UDP flow to a name still allowed broke; 86, 87: a connection "
         "to the denied name's addresses went on; 89: a UDP flow to it did";
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
    const std::string busy = dir() + "/busy.sock";
    std::filesystem::create_directories(busy + "/in-the-way");
    DaemonProcess failing(SEBPF_DAEMON_PATH, dir(), pin_dir_,
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
  const auto att = learn_both_until_a_sweep_writes_their_chains();
  if (HasFailure()) return;
  daemon_->kill9();
  start_with_upstream(kSweepEverySecond);
  expect_other_examples_address_alone_taken_back(att);
}

// The state directory removed while the daemon runs (a cleanup that took
// it for a cache): both its files are written again at once, so that
// after a crash a rule still takes back exactly what its names taught.
TEST_F(DnsE2eTest, AfterTheStateDirectoryWasRemovedARuleStillTakesBackOnlyWhatItsNamesTaught) {
  const auto att = learn_both_until_a_sweep_writes_their_chains();
  if (HasFailure()) return;
  const auto both_there = [&] {
    return std::filesystem::exists(state_dir() + "/learned-chains.pb") &&
           std::filesystem::exists(state_file());
  };
  {
    StoppedProcess stopped(daemon_->pid());  // so that the removal is whole
    std::filesystem::remove_all(state_dir());
  }
  EXPECT_TRUE(within(milliseconds(3000), both_there)) << daemon_->log();
  daemon_->kill9();
  start_with_upstream(kSweepEverySecond);
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
  const std::string chains_file = dir() + "/state/learned-chains.pb";
  const std::string older = dir() + "/learned-chains.older";
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

}  // namespace
}  // namespace sebpf::testing
