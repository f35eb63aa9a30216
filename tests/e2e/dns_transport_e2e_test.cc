// UDP and TCP and the endpoint's limits: answers cut to the client's size,
// TCP clients (pipelining, half-closes, idle ones), the upstream's TCP
// connections, descriptors running out, rates, the host's upstream budget,
// and a port held by another program.
#include "dns_fixture.h"

namespace sebpf::testing {
namespace {

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

// The daemon's soft RLIMIT_NOFILE lowered for a while: the one it had comes
// back with restore() or at the end of the scope, a failed assertion
// included (a daemon left short of descriptors would fail the tests after).
class LoweredOpenFilesLimit {
 public:
  LoweredOpenFilesLimit(pid_t pid, rlim_t soft) : pid_(pid) {
    lowered_ = prlimit(pid, RLIMIT_NOFILE, nullptr, &original_) == 0;
    const rlimit lower{soft, original_.rlim_max};  // the soft limit is what counts
    lowered_ = lowered_ && prlimit(pid, RLIMIT_NOFILE, &lower, nullptr) == 0;
  }
  ~LoweredOpenFilesLimit() { restore(); }
  LoweredOpenFilesLimit(const LoweredOpenFilesLimit&) = delete;
  LoweredOpenFilesLimit& operator=(const LoweredOpenFilesLimit&) = delete;

  bool lowered() const { return lowered_; }
  void restore() {
    if (lowered_) {
      EXPECT_EQ(prlimit(pid_, RLIMIT_NOFILE, &original_, nullptr), 0);
    }
    lowered_ = false;
  }

 private:
  const pid_t pid_;
  rlimit original_{};
  bool lowered_ = false;
};

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
  const auto open_now = static_cast<rlim_t>(std::distance(
      std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"), {}));
  LoweredOpenFilesLimit tight(pid, open_now + 4);
  ASSERT_TRUE(tight.lowered());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 20; ++i) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    const socklen_t len = endpoint.to_sockaddr(ss);
    ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);  // the backlog takes it
    clients.push_back(std::move(fd));
  }
  const uint64_t used = dns_loop_cpu_ticks_in_a_second(pid);
  tight.restore();
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
  // A descriptor is had below the limit. With the standard three open, a
  // limit of 3 is below every descriptor the daemon opened, the spare's
  // included: closing the spare makes no room.
  for (int fd = 0; fd < 3; ++fd) {
    ASSERT_TRUE(
        std::filesystem::exists("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd)));
  }
  LoweredOpenFilesLimit none_spare(pid, 3);
  ASSERT_TRUE(none_spare.lowered());
  std::vector<DnsTcpStream> clients;
  for (uint16_t id = 0; id < 5; ++id) {
    auto stream = DnsTcpStream::connect(endpoint);  // the backlog takes it
    ASSERT_TRUE(stream.ok()) << stream.error().message();
    ASSERT_TRUE(stream->send(make_query("allowed.example", kTypeA, id)).ok());
    clients.push_back(std::move(*stream));
  }
  const uint64_t used = dns_loop_cpu_ticks_in_a_second(pid);
  none_spare.restore();
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

}  // namespace
}  // namespace sebpf::testing
