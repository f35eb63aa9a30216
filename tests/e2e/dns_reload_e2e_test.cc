// A reload (SIGHUP): a fresh copy of the daemon replaces the running one in
// the same process and serves every DNS endpoint on the sockets it was
// handed, so that workloads asking meanwhile are answered, late but never
// refused (a thousand queries at once included); a reload the new
// configuration would fail is refused. And the
// same across a crash under systemd, whose file descriptor store keeps the
// endpoints' sockets for the next process.
#include <csignal>
#include <map>

#include "dns_fixture.h"

namespace sebpf::testing {
namespace {

// In the workload: asks allowed.example through `resolver` every few
// milliseconds for `duration`; a query left unanswered for 2 s is asked
// again up to `retries` times, as a stub resolver does (glibc's
// `attempts`). 0 if every query was answered with its address; else how
// many were not (at most 100, each on stderr), or 101 if it asked too few
// to tell.
int ask_throughout(const net::SocketAddress& resolver, milliseconds duration, int retries = 0) {
  int asked = 0, failed = 0;
  const auto until = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < until) {
    auto answer =
        dns_query(resolver, make_query("allowed.example", kTypeA), false, milliseconds(2000));
    for (int again = 0; again < retries && !answer.ok(); ++again) {
      std::fprintf(stderr, "query %d: %s; asked again\n", asked + 1,
                   answer.error().message().c_str());
      answer =
          dns_query(resolver, make_query("allowed.example", kTypeA), false, milliseconds(2000));
    }
    ++asked;
    if (!answer.ok()) {
      std::fprintf(stderr, "query %d: %s\n", asked, answer.error().message().c_str());
      ++failed;
    } else if (answer_addresses(answer->message) != std::vector<std::string>{"198.51.100.2"}) {
      std::fprintf(stderr, "query %d: rcode %d\n", asked, answer->message.header.rcode);
      ++failed;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  if (failed > 0) return std::min(failed, 100);
  return asked < 50 ? 101 : 0;
}

class DnsReloadE2eTest : public DnsE2eTest {
 protected:
  // SIGHUP, then waits until the replacement serves (its "ready" is the
  // log's `readies`th).
  void reload_and_wait_ready(size_t readies = 2) {
    ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
    ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"ready\"", readies, std::chrono::seconds(15)))
        << daemon_->log();
    // The new process finds in the kernel each endpoint its record names.
    EXPECT_EQ(daemon_->log().find("dns_endpoint_corrected"), std::string::npos) << daemon_->log();
  }

  // Stops the daemon (SIGSTOP), sends `count` queries for allowed.example
  // to `endpoint` from one socket, resumes it: every query is answered
  // with the name's address.
  void expect_queries_held_while_paused(const net::SocketAddress& endpoint, uint16_t count) {
    auto burst = DnsUdpBurst::connect(endpoint);
    ASSERT_TRUE(burst.ok()) << burst.error().message();
    ASSERT_EQ(kill(daemon_->pid(), SIGSTOP), 0);
    struct Resume {
      pid_t pid;
      ~Resume() { kill(pid, SIGCONT); }
    } resume{daemon_->pid()};
    ASSERT_TRUE(burst->send("allowed.example", count).ok());
    ASSERT_EQ(kill(daemon_->pid(), SIGCONT), 0);
    auto answers = burst->collect(std::chrono::seconds(10));
    ASSERT_TRUE(answers.ok()) << answers.error().message();
    size_t unanswered = 0, without_address = 0;
    for (const auto& answer : *answers) {
      if (!answer) {
        ++unanswered;
      } else if (answer_addresses(*answer) != std::vector<std::string>{"198.51.100.2"}) {
        ++without_address;
      }
    }
    EXPECT_EQ(unanswered, 0u) << "queries lost while the daemon could not read";
    EXPECT_EQ(without_address, 0u) << "answered, but not with the address";
  }
};

TEST_F(DnsReloadE2eTest, AWorkloadAskingThroughAReloadIsAnsweredEveryTime) {
  start_with_upstream();
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  Child workload(
      [&] { return cgroup_->add_self() ? ask_throughout(endpoint, milliseconds(4000)) : 120; });
  std::this_thread::sleep_for(milliseconds(700));
  reload_and_wait_ready();
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0) << "queries unanswered (see stderr)";

  const std::string log = daemon_->log();
  EXPECT_NE(log.find("\"event\":\"reexec\""), std::string::npos) << "the same process, re-executed";
  EXPECT_NE(log.find("\"event\":\"dns_sockets_taken_over\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"unclaimed\":\"0\""), std::string::npos) << log;
  // The new process learns and enforces as the old one did, and its TCP
  // listener is the one handed over.
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "other.example", kTypeA); }),
            kRcodeBase + 3)
      << "refused (NXDOMAIN)";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_TRUE(dns_query(endpoint, make_query("allowed.example", kTypeA), /*tcp=*/true).ok());
}

// The endpoint of a container in a network namespace of its own is made
// there: the replacement finds the socket of that namespace's endpoint.
TEST_F(DnsReloadE2eTest, AContainerInItsOwnNetworkNamespaceIsAnsweredThroughAReload) {
  start_with_upstream();
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
    if (!cgroup_->add_self() || unshare(CLONE_NEWNET) != 0) return 110;
    if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 111;
    if (!meet.ready_then_wait()) return 112;
    // Steered to the endpoint in this namespace, as a container's resolver is.
    return ask_throughout(*net::SocketAddress::parse("203.0.113.2:53", 53), milliseconds(4000));
  });
  attach_by_pid_then_go(meet, workload, dns_policy({"allowed.example"}));
  if (HasFatalFailure()) return;
  std::this_thread::sleep_for(milliseconds(700));
  reload_and_wait_ready();
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0) << "queries unanswered (see stderr)";
  EXPECT_NE(daemon_->log().find("\"unclaimed\":\"0\""), std::string::npos) << daemon_->log();
}

// A VM's endpoint is bound to its interface and carries the datapath's
// socket filter: the replacement takes that socket, and puts its own
// filter on it.
TEST_F(DnsReloadE2eTest, AGuestBehindAnInterfaceIsAnsweredThroughAReload) {
  start_with_upstream();
  v1::AttachRequest req;
  req.set_interface_name(topo_->host_if());
  *req.mutable_policy() = dns_policy({"allowed.example"});
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  const auto endpoint = endpoint_of(att);
  Child guest(
      [&] { return topo_->ns().enter() ? ask_throughout(endpoint, milliseconds(4000)) : 120; });
  std::this_thread::sleep_for(milliseconds(700));
  reload_and_wait_ready();
  EXPECT_EQ(guest.wait(std::chrono::seconds(10)), 0) << "queries unanswered (see stderr)";
  EXPECT_NE(daemon_->log().find("\"unclaimed\":\"0\""), std::string::npos) << daemon_->log();
}

// Under systemd with a file descriptor store (FileDescriptorStoreMax= in
// dist/systemd/superebpfd.service) the daemon keeps a copy of the API's
// socket and of each endpoint's sockets there, and systemd passes them to
// the process it starts next: after a crash (Restart=on-failure) and across
// `systemctl restart` (a stop with the restart job queued). A workload
// asking meanwhile is answered, late but never refused, and the API's
// socket takes connections. A detached attachment's sockets leave the
// store (which would otherwise keep them, and a container's network
// namespace, open). The test plays systemd.
TEST_F(DnsReloadE2eTest, SystemdsStoreKeepsTheSocketsAnsweringThroughACrashAndARestart) {
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid());
  ASSERT_NO_FATAL_FAILURE(start_with_upstream("", "", &systemd));
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  systemd.take_in();
  const auto stored = systemd.stored();
  ASSERT_EQ(stored.size(), 2u) << "the API's socket and one endpoint's";
  EXPECT_EQ(stored.count("api"), 1u);
  // A query the killed process had taken in dies with it, as with any
  // server that crashes: the workload's resolver asks once more (a reload
  // or a clean stop loses none; the tests above ask only once).
  Child workload([&] {
    return cgroup_->add_self() ? ask_throughout(endpoint, milliseconds(5000), /*retries=*/1) : 120;
  });
  // systemctl restart: a stop (the daemon made the API's socket itself:
  // it leaves the file, as the store keeps the socket), then a start.
  std::this_thread::sleep_for(milliseconds(700));
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(unix_connects(daemon_->socket())) << "the stop removed the stored socket's file";
  systemd.take_in();
  ASSERT_NO_FATAL_FAILURE(start_with_upstream("", "", &systemd));
  // A crash, and Restart=on-failure.
  std::this_thread::sleep_for(milliseconds(700));
  daemon_->kill9();
  EXPECT_TRUE(unix_connects(daemon_->socket())) << "with no daemon running";
  std::this_thread::sleep_for(milliseconds(300));  // systemd's RestartSec, shortened
  systemd.take_in();
  ASSERT_NO_FATAL_FAILURE(start_with_upstream("", "", &systemd));
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0) << "queries unanswered (see stderr)";
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("\"from\":\"systemd\""), std::string::npos) << log;
  EXPECT_EQ(log.find("\"unclaimed\":\"1"), std::string::npos) << log;
  EXPECT_NE(log.find("\"from_systemd\":\"true\""), std::string::npos) << log;

  ASSERT_TRUE(detach(att.id()).ok());
  systemd.take_in();
  EXPECT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}}))
      << "the detached endpoint's sockets are still stored";
}

// While no thread reads (a reload, a restart under systemd's store; here
// the daemon stopped with SIGSTOP), queries wait in the endpoint's socket.
// Its receive buffer (dns.receive_buffer_bytes) holds a thousand and more,
// where the kernel's default would hold about 250 and drop the rest. And
// those past dns.max_inflight wait there too, for answers to make room:
// none is dropped. (200 in flight at most: more at once overflow the test
// upstream's own socket, and the retries make the test slow.)
const std::string kFewInFlight = "dns:\n  max_inflight: 200\n";

TEST_F(DnsReloadE2eTest, AThousandQueriesSentWhileTheDaemonCannotReadAreAllAnswered) {
  ASSERT_NO_FATAL_FAILURE(start_with_upstream(kFewInFlight));
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  ASSERT_NO_FATAL_FAILURE(expect_queries_held_while_paused(endpoint_of(att), 1000));
  const v1::DnsCounters counters = get_counters(att.id()).dns();
  EXPECT_EQ(counters.answered(), 1000u);
  EXPECT_EQ(counters.dropped_unread(), 0u);
  EXPECT_EQ(counters.rate_limited(), 0u);
}

// The size is the socket's: a reload sets the new one on the sockets it
// takes over.
TEST_F(DnsReloadE2eTest, AReloadSizesTheSocketsItTakesOverAnew) {
  ASSERT_NO_FATAL_FAILURE(start_with_upstream(kFewInFlight + "  receive_buffer_bytes: 0\n"));
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  std::ofstream(dir() + "/superebpfd.yaml") << kFewInFlight;
  ASSERT_NO_FATAL_FAILURE(reload_and_wait_ready());
  ASSERT_NO_FATAL_FAILURE(expect_queries_held_while_paused(endpoint, 1000));
}

// The process a reload starts would stop at once on a configuration it
// refuses, and every endpoint with it: such a reload is refused and the
// running daemon goes on. A good one is then applied; detach_on_exit,
// which a stop obeys, does not apply to a reload.
TEST_F(DnsReloadE2eTest, AReloadIsRefusedWhileTheConfigurationIsBrokenAndAppliesAGoodOne) {
  start_with_upstream("detach_on_exit: true\ndns:\n  refuse_with: nxdomain\n");
  const auto att = attach_cgroup(dns_policy({"allowed.example"}));
  const auto endpoint = endpoint_of(att);
  const std::string config = dir() + "/superebpfd.yaml";
  std::ofstream(config) << "detach_on_exit: true\ndns:\n  refuse_with: maybe\n";
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"reload_refused\"", 1, std::chrono::seconds(5)));
  EXPECT_NE(daemon_->log().find("must be nxdomain or refused"), std::string::npos)
      << daemon_->log();
  auto refused = dns_query(endpoint, make_query("other.example", kTypeA));
  ASSERT_TRUE(refused.ok()) << "still serving: " << refused.error().message();
  EXPECT_EQ(refused->message.header.rcode, dns::rcode::kNxDomain);

  std::ofstream(config) << "detach_on_exit: true\ndns:\n  refuse_with: refused\n";
  reload_and_wait_ready();
  refused = dns_query(endpoint, make_query("other.example", kTypeA));
  ASSERT_TRUE(refused.ok()) << refused.error().message();
  EXPECT_EQ(refused->message.header.rcode, dns::rcode::kRefused) << "the new configuration";
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0)
      << "still attached, and learning";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM)
      << "and enforcing";
}

// A reload runs the binary the daemon was started from: if it is gone (an
// upgrade that moved it), the reload is refused, saying so, and the
// running daemon goes on.
TEST_F(DnsReloadE2eTest, AReloadWhoseBinaryIsGoneIsRefused) {
  const std::string binary = dir() + "/superebpfd";
  std::filesystem::copy_file(SEBPF_DAEMON_PATH, binary);
  start_daemon({"--dns-upstream", knot_->address().to_string()}, binary);
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  std::filesystem::remove(binary);
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"reload_refused\"", 1, std::chrono::seconds(5)));
  EXPECT_NE(daemon_->log().find(binary), std::string::npos) << daemon_->log();
  EXPECT_TRUE(dns_query(endpoint, make_query("allowed.example", kTypeA)).ok()) << "still serving";
}

}  // namespace
}  // namespace sebpf::testing
