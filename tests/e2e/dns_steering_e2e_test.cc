// Where DNS goes: a cgroup's DNS to any resolver steered to its endpoint (in
// the host's namespace and a container's own, one that joins after the
// attach included), a guest behind an interface
// held to its endpoint, which follows the host side's addresses and a
// bridge's.
#include <net/if.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "dns_fixture.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

// The shipped unit's CapabilityBoundingSet, in setpriv's --bounding-set
// syntax ("-all,+bpf,..."); empty if the unit has none.
std::string shipped_unit_bounding_set() {
  std::ifstream unit(std::string(SEBPF_SOURCE_DIR) + "/dist/systemd/superebpfd.service");
  const std::string key = "CapabilityBoundingSet=";
  for (std::string line; std::getline(unit, line);) {
    if (!line.starts_with(key)) continue;
    std::istringstream caps(line.substr(key.size()));
    std::string set = "-all";
    for (std::string cap; caps >> cap;) {
      if (cap.starts_with("CAP_")) cap.erase(0, 4);
      std::transform(cap.begin(), cap.end(), cap.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      set += ",+" + cap;
    }
    return set;
  }
  return "";
}

// In a container's network namespace, once attached with
// dns_policy({"allowed.example"}): allowed.example resolves through any
// resolver's address (steered to the endpoint) and its address is learned.
// No route leaves such a namespace: a destination the hooks allow fails
// with ENETUNREACH, one they refuse with EPERM. 0, or the step that failed.
int container_resolves_allowed_example() {
  auto answer = dns_query(*net::SocketAddress::parse("203.0.113.2:53", 53),
                          make_query("allowed.example", kTypeA));
  if (!answer.ok()) {
    std::fprintf(stderr, "query: %s\n", answer.error().message().c_str());
    return 83;
  }
  if (answer_addresses(answer->message) != std::vector<std::string>{"198.51.100.2"}) return 84;
  if (udp_connect("198.51.100.2", kEchoPort) != ENETUNREACH) return 85;
  if (udp_connect("198.51.100.3", kEchoPort) != EPERM) return 86;
  return 0;
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
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
    if (!cgroup_->add_self() || unshare(CLONE_NEWNET) != 0) return 80;
    // As container runtimes often do: no IPv6, so no ::1 for the endpoint.
    if (run_command({"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"}).exit_code != 0 ||
        run_command({"sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1"}).exit_code != 0 ||
        run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) {
      return 81;
    }
    return meet.ready_then_wait() ? container_resolves_allowed_example() : 82;
  });
  attach_by_pid_then_go(meet, workload, dns_policy({"allowed.example"}));
  if (HasFatalFailure()) return;
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
  EXPECT_NE(daemon_->log().find("dns_endpoint_in_workload_netns"), std::string::npos);
}

// A cgroup attached before any process is in it (a pod's, attached as it
// is made) has its endpoint made in the host's namespace: nothing says yet
// where its workload will send from. A container's process that joins it
// from a namespace of its own is served there from then on.
TEST_F(DnsE2eTest, AContainerThatJoinsACgroupAttachedEmptyIsServedInItsNamespace) {
  // No sweep during the test: what the cgroup's events tell is all there is.
  start_with_upstream("sweep_interval_seconds: 3600\n");
  attach_cgroup(dns_policy({"allowed.example"}));
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
    if (unshare(CLONE_NEWNET) != 0) return 80;
    if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 81;
    if (!cgroup_->add_self()) return 89;
    return meet.ready_then_wait() ? container_resolves_allowed_example() : 82;
  });
  meet.forked();
  ASSERT_TRUE(meet.wait_ready()) << "the workload ended with "
                                 << workload.wait(std::chrono::seconds(1));
  // Asked once it is in place, as a container's first query is.
  EXPECT_TRUE(within(std::chrono::milliseconds(2000), [&] {
    return daemon_->log().find("workload_netns_followed") != std::string::npos;
  })) << daemon_->log();
  ASSERT_TRUE(meet.go());
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
  EXPECT_EQ(daemon_->log().find("\"level\":\"error\""), std::string::npos) << daemon_->log();
}

// A process that enters a namespace of its own after it joined the cgroup
// (as a runtime's first process may: it joins, enters the container's
// namespace, and exits once the container's own process runs) changes
// nothing in the cgroup's population. The daemon looks again shortly
// after the population changed (0.1, 0.6 and 2.6 s on), at the process's
// first socket call there (the hooks report it), and at each sweep.
class DnsFollowTest : public DnsE2eTest {
 protected:
  // What the workload does in its new namespace before the test looks
  // for the daemon's follow: nothing, or ask for allowed.example (its
  // endpoint may not be there yet: answered or not).
  enum class FirstCall { kNone, kDnsQuery };
  // The cgroup attached empty; a workload joins it from the host's
  // namespace and makes one of its own `after` that: served there once
  // the daemon has followed it, which it must within `deadline`.
  void expect_followed_after_joining(std::chrono::milliseconds after,
                                     std::chrono::milliseconds deadline,
                                     FirstCall first_call = FirstCall::kNone) {
    attach_cgroup(dns_policy({"allowed.example"}));
    Rendezvous meet;
    ASSERT_TRUE(meet.valid());
    Child workload([&] {
      if (!cgroup_->add_self()) return 89;
      std::this_thread::sleep_for(after);
      if (unshare(CLONE_NEWNET) != 0) return 80;
      if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 81;
      if (first_call == FirstCall::kDnsQuery) {
        (void)dns_query(*net::SocketAddress::parse("203.0.113.2:53", 53),
                        make_query("allowed.example", kTypeA));
      }
      return meet.ready_then_wait() ? container_resolves_allowed_example() : 82;
    });
    meet.forked();
    ASSERT_TRUE(meet.wait_ready())
        << "the workload ended with " << workload.wait(std::chrono::seconds(1));
    EXPECT_TRUE(within(deadline, [&] {
      return daemon_->log().find("workload_netns_followed") != std::string::npos;
    })) << daemon_->log();
    ASSERT_TRUE(meet.go());
    EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
    EXPECT_EQ(daemon_->log().find("\"level\":\"error\""), std::string::npos) << daemon_->log();
  }
};

TEST_F(DnsFollowTest, AWorkloadThatMakesItsNamespaceJustAfterJoiningIsServedThereWithinASecond) {
  // No sweep during the test: the looks after the event alone.
  start_with_upstream("sweep_interval_seconds: 3600\n");
  expect_followed_after_joining(std::chrono::milliseconds(200), std::chrono::milliseconds(1000));
}

TEST_F(DnsFollowTest, AWorkloadThatMakesItsNamespaceLaterIsServedThereFromTheNextSweep) {
  start_with_upstream(kSweepEverySecond);
  // Past the last look after the event (2.6 s), and no socket call.
  expect_followed_after_joining(std::chrono::milliseconds(3000), std::chrono::milliseconds(2000));
}

TEST_F(DnsFollowTest, AWorkloadThatMakesItsNamespaceLaterIsFollowedAtItsFirstSocketCall) {
  // No sweep during the test, and past the last look after the event: the
  // hooks' report of its first DNS query alone (any connect() or sendmsg()
  // is reported). The query after is answered.
  start_with_upstream("sweep_interval_seconds: 3600\n");
  expect_followed_after_joining(std::chrono::milliseconds(3000), std::chrono::milliseconds(500),
                                FirstCall::kDnsQuery);
}

// An endpoint that cannot be made in the namespace its workload was
// followed to (here its port is held there, by the container itself, as
// it joins) stays where it was, and the first look after the port is free
// moves it.
TEST_F(DnsE2eTest, AnEndpointThatCouldNotFollowItsWorkloadIsMovedAtALaterLook) {
  start_with_upstream(kSweepEverySecond);
  const v1::Attachment att = attach_cgroup(dns_policy({"allowed.example"}));
  sockaddr_storage port_holder{};
  const socklen_t length =
      net::SocketAddress(*net::IpAddress::parse("127.0.0.1"), endpoint_of(att).port())
          .to_sockaddr(port_holder);
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
    if (unshare(CLONE_NEWNET) != 0) return 80;
    if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 81;
    UniqueFd held(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!held || bind(held.get(), reinterpret_cast<sockaddr*>(&port_holder), length) != 0) {
      return 90;
    }
    if (!cgroup_->add_self()) return 89;
    usleep(300 * 1000);  // the cgroup's event looked, and found the port taken
    held.reset();
    return meet.ready_then_wait() ? container_resolves_allowed_example() : 82;
  });
  meet.forked();
  ASSERT_TRUE(meet.wait_ready()) << "the workload ended with "
                                 << workload.wait(std::chrono::seconds(1));
  EXPECT_NE(daemon_->log().find("\"dns_endpoint\":\"not moved"), std::string::npos)
      << "the first look must have found the port taken, else this shows nothing\n"
      << daemon_->log();
  EXPECT_TRUE(within(std::chrono::milliseconds(3000), [&] {
    return daemon_->log().find("\"dns_endpoint\":\"moved\"") != std::string::npos;
  })) << daemon_->log();
  ASSERT_TRUE(meet.go());
  EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
}

// A container whose loopback was still down as its endpoint was made in
// its namespace had no ::1 there: the endpoint served IPv4 alone. Once the
// loopback is up, a look (here the sweep) binds ::1 too, keeping the IPv4
// sockets, and the container's DNS over IPv6 is answered.
class DnsIpv6GainedTest : public DnsE2eTest {
 protected:
  // The container brings its loopback up once attached; if
  // `holds_the_port`, it then holds the endpoint's port on ::1 for 1.5 s
  // (a look finds ::1 but cannot bind it), then lets it go.
  void expect_ipv6_gained(bool holds_the_port) {
    start_with_upstream(kSweepEverySecond);
    // The endpoint's port, told to the container once attached.
    auto* port = static_cast<std::atomic<uint16_t>*>(mmap(nullptr, sizeof(std::atomic<uint16_t>),
                                                          PROT_READ | PROT_WRITE,
                                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(port, MAP_FAILED);
    Rendezvous meet;
    ASSERT_TRUE(meet.valid());
    Child workload([&] {
      if (!cgroup_->add_self() || unshare(CLONE_NEWNET) != 0) return 80;
      if (!meet.ready_then_wait()) return 82;  // attached, its loopback down
      if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 81;
      if (holds_the_port) {
        sockaddr_storage address{};
        const socklen_t length =
            net::SocketAddress(*net::IpAddress::parse("::1"), port->load()).to_sockaddr(address);
        UniqueFd held(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!held || bind(held.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
          return 90;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      }
      const auto resolver = *net::SocketAddress::parse("[2001:db8::3]:53", 53);
      const auto query = make_query("allowed.example", kTypeA);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (std::chrono::steady_clock::now() < deadline) {
        auto answer = dns_query(resolver, query, false, std::chrono::milliseconds(200));
        if (answer.ok()) {
          return answer_addresses(answer->message) == std::vector<std::string>{"198.51.100.2"} ? 0
                                                                                               : 84;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return 83;
    });
    attach_by_pid_then_go(meet, workload, dns_policy({"allowed.example"}),
                          [&](const v1::Attachment& att) { port->store(endpoint_of(att).port()); });
    if (HasFatalFailure()) return;
    EXPECT_TRUE(within(
        std::chrono::milliseconds(1000),
        [&] { return daemon_->log().find("dns_endpoint_address_skipped") != std::string::npos; }))
        << "the endpoint must have been made without ::1, else this shows nothing\n"
        << daemon_->log();
    EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0) << daemon_->log();
    munmap(port, sizeof(std::atomic<uint16_t>));
    const std::string log = daemon_->log();
    EXPECT_NE(log.find("dns_endpoint_address_added"), std::string::npos) << log;
    EXPECT_EQ(log.find("dns_endpoint_address_not_added") != std::string::npos, holds_the_port)
        << log;
    EXPECT_EQ(log.find("\"level\":\"error\""), std::string::npos) << log;
  }
};

TEST_F(DnsIpv6GainedTest, AnEndpointGainsIpv6OnceItsContainersLoopbackIsUp) {
  expect_ipv6_gained(/*holds_the_port=*/false);
}

// A look that finds ::1 but cannot bind it (here the container holds the
// port there) leaves the endpoint serving IPv4, and a later look binds it.
TEST_F(DnsIpv6GainedTest, AnIpv6AddressWhosePortIsTakenIsBoundAtALaterLook) {
  expect_ipv6_gained(/*holds_the_port=*/true);
}

// The daemon with what the shipped unit lets it keep (dist/systemd's
// CapabilityBoundingSet), serving containers as they usually are.
class DnsUnderTheUnitsCapabilitiesTest : public DnsE2eTest {
 protected:
  // A workload that joins the cgroup and `becomes_container` (0, or the
  // step that failed) is attached by pid: its DNS is steered to the
  // endpoint made in its namespace, the answer's address is learned, and
  // nothing the daemon logs is an error.
  void expect_container_served(const std::function<int()>& becomes_container) {
    const std::string bounding_set = shipped_unit_bounding_set();
    ASSERT_FALSE(bounding_set.empty()) << "no CapabilityBoundingSet in the shipped unit";
    start_daemon({"--dns-upstream", knot_->address().to_string()},
                 daemon_with_bounding_set(bounding_set));
    if (HasFatalFailure()) return;
    Rendezvous meet;
    ASSERT_TRUE(meet.valid());
    Child workload([&] {
      if (!cgroup_->add_self()) return 89;
      if (const int failed = becomes_container(); failed != 0) return failed;
      return meet.ready_then_wait() ? container_resolves_allowed_example() : 82;
    });
    attach_by_pid_then_go(meet, workload, dns_policy({"allowed.example"}));
    if (HasFatalFailure()) return;
    EXPECT_EQ(workload.wait(std::chrono::seconds(10)), 0);
    const std::string log = daemon_->log();
    EXPECT_NE(log.find("dns_endpoint_in_workload_netns"), std::string::npos);
    EXPECT_EQ(log.find("capability_missing"), std::string::npos) << log;
    EXPECT_EQ(log.find("\"level\":\"error\""), std::string::npos) << log;
  }
};

constexpr uid_t kNobody = 65534;

// A container's unprivileged user, as runtimes run its processes.
bool become_nobody() {
  return setresgid(kNobody, kNobody, kNobody) == 0 && setresuid(kNobody, kNobody, kNobody) == 0;
}

// A network namespace of its own, and processes of an unprivileged user,
// whose namespace only CAP_SYS_PTRACE opens.
TEST_F(DnsUnderTheUnitsCapabilitiesTest, AContainerOfAnotherUserIsServed) {
  expect_container_served([] {
    if (unshare(CLONE_NEWNET) != 0) return 80;
    if (run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0) return 81;
    if (!become_nobody()) return 87;
    return 0;
  });
}

// A rootless container (Podman's, or Docker's with user namespace
// remapping): an unprivileged user's processes in a user namespace of
// their own, which owns their network namespace.
TEST_F(DnsUnderTheUnitsCapabilitiesTest, ARootlessContainerIsServed) {
  expect_container_served([] {
    if (!become_nobody()) return 87;
    // A change of user made it undumpable, its /proc/self files root's:
    // a user's own process is dumpable, and may map itself as below.
    if (prctl(PR_SET_DUMPABLE, 1) != 0 || unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) return 80;
    // Root inside its user namespace, as a rootless runtime maps it.
    const auto map = [](const char* file, const std::string& line) {
      std::ofstream out(file);
      return static_cast<bool>(out << line << std::flush);
    };
    const std::string nobody_as_root = "0 " + std::to_string(kNobody) + " 1\n";
    if (!map("/proc/self/uid_map", nobody_as_root) || !map("/proc/self/setgroups", "deny") ||
        !map("/proc/self/gid_map", nobody_as_root)) {
      return 88;
    }
    return run_command({"ip", "link", "set", "lo", "up"}).exit_code != 0 ? 81 : 0;
  });
}

// An unconnected UDP socket sees the answer's source as the resolver it
// sent to (recvfrom), and a TCP socket's peer is that resolver
// (getpeername), although both talked to the endpoint.
TEST_F(DnsE2eTest, SteeredSocketsSeeTheResolverTheyAsked) {
  start_with_upstream();
  attach_cgroup(dns_policy({"allowed.example"}));
  EXPECT_EQ(
      in_cgroup([] {
        const net::SocketAddress resolver(*net::IpAddress::parse("198.51.100.3"), 53);
        const UniqueFd fd = send_udp_query(resolver, "allowed.example");
        if (!fd) return 10;
        timeval tv{2, 0};
        setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        uint8_t buf[512];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        if (recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) < 0)
          return 11;
        const auto source = net::SocketAddress::from_sockaddr(from, len);
        return source.ok() && *source == resolver ? 0 : 12;
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
  v1::Policy denylist = make_policy(v1::MODE_DENYLIST, {});
  denylist.set_dns_mode(v1::MODE_DENYLIST);
  const v1::Attachment att = attach_interface(topo_->host_if(), denylist);
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
      const net::SocketAddress other(*net::IpAddress::parse("203.0.113.1"), 53);
      return send_udp_query(other, "allowed.example") ? 0 : 1;
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
  v1::Attachment att = attach_interface(dev, dns_policy({"allowed.example"}));
  ASSERT_FALSE(att.id().empty());
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
  EXPECT_EQ(daemon_->log().find("dns_endpoint_corrected"), std::string::npos)
      << "the kernel's endpoint was not the record's: " << daemon_->log();
  for (const char* event : {"dns_endpoint_failed", "dns_endpoint_address_skipped"}) {
    EXPECT_EQ(daemon_->log().find(event), std::string::npos)
        << "found at start, before the endpoint is opened on an address gone: " << daemon_->log();
  }
  // Its own name again, for the topology's cleanup.
  run_command({"ip", "link", "set", "dev", dev, "down"});
  run_command({"ip", "link", "set", "dev", dev, "name", original});
}

uint64_t packets_allowed_as_dns_endpoint(const v1::Counters& counters) {
  for (const v1::Counter& c : counters.counters()) {
    if (c.hook() == "packet" && c.reason() == "allow_dns_endpoint") return c.count();
  }
  return 0;
}

// A host side left with no address (flushed, or on its way to deletion)
// leaves its guest no resolver: the kernel no longer lets DNS through to
// the address it had, which the host would route on to whoever has it now.
// A start makes it so where an earlier process left the kernel naming
// the old address. Given an address again, the guest is served on the
// same port.
TEST_F(DnsE2eTest, AHostSideLeftWithNoAddressLetsNoDnsThroughToTheOneItHad) {
  start_with_upstream();
  const std::string& dev = topo_->host_if();
  // One address: the endpoint is left none when it goes.
  for (const char* cidr : {"203.0.113.1/24", "2001:db8::1/64"}) {
    must_run({"ip", "addr", "del", cidr, "dev", dev});
  }
  v1::Attachment att = attach_interface(dev, dns_policy({"allowed.example"}));
  ASSERT_EQ(att.dns().ipv4(), "198.51.100.1");
  ASSERT_EQ(att.dns().ipv6(), "");
  const uint32_t port = att.dns().port();
  const net::SocketAddress endpoint = endpoint_of(att);
  ASSERT_EQ(
      topo_->run_in_peer([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }),
      0);

  // The guest goes on sending to the host side's hardware address, as one
  // whose neighbour entry is still fresh does.
  std::string mac;
  std::ifstream("/sys/class/net/" + dev + "/address") >> mac;
  must_run({"ip", "-n", topo_->ns().name(), "neigh", "replace", "198.51.100.1", "lladdr", mac,
            "dev", topo_->peer_if(), "nud", "permanent"});
  must_run({"ip", "addr", "del", "198.51.100.1/24", "dev", dev});
  ASSERT_TRUE(endpoint_moves_to(att, "", "", milliseconds(2000))) << daemon_->log();
  const auto guest_dns_to_old_address_is_dropped = [&] {
    const v1::Counters before = get_counters(att.id());
    for (const uint16_t to_port : {static_cast<uint16_t>(port), uint16_t{53}}) {
      const net::SocketAddress old(*net::IpAddress::parse("198.51.100.1"), to_port);
      EXPECT_EQ(topo_->run_in_peer([&] { return send_udp_query(old, "allowed.example") ? 0 : 1; }),
                0);
    }
    EXPECT_TRUE(within(milliseconds(2000), [&] {
      return get_counters(att.id()).denied() >= before.denied() + 2;
    })) << "the guard dropped both";
    EXPECT_EQ(packets_allowed_as_dns_endpoint(get_counters(att.id())),
              packets_allowed_as_dns_endpoint(before))
        << "let through to an address the host no longer has";
  };
  guest_dns_to_old_address_is_dropped();
  EXPECT_EQ(daemon_->log().find("dns_endpoint_not_moved"), std::string::npos) << daemon_->log();

  // A kernel left naming the old address (by an earlier build, or a
  // process killed between its kernel write and its record's) is set to
  // the record's endpoint at the next start.
  daemon_->kill9();
  {
    datapath::Config config;
    config.pin_dir = pin_dir_;
    auto stale = datapath::Datapath::open(config);
    ASSERT_TRUE(stale.ok()) << stale.error().message();
    const datapath::AttachmentKey key{datapath::TargetKind::kInterface,
                                      if_nametoindex(dev.c_str())};
    datapath::DnsEndpoint old;
    old.v4 = *net::IpAddress::parse("198.51.100.1");
    old.port = static_cast<uint16_t>(port);
    ok((*stale)->set_dns_endpoint(key, old));
  }
  start_with_upstream();
  EXPECT_NE(daemon_->log().find("\"event\":\"dns_endpoint_corrected\""), std::string::npos)
      << daemon_->log();
  guest_dns_to_old_address_is_dropped();

  must_run({"ip", "addr", "add", "198.51.100.1/24", "dev", dev});
  ASSERT_TRUE(endpoint_moves_to(att, "198.51.100.1", "", milliseconds(2000))) << daemon_->log();
  EXPECT_EQ(att.dns().port(), port);
  EXPECT_EQ(
      topo_->run_in_peer([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }),
      0)
      << "served again";
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
  v1::Policy denylist = dns_policy({"other.example"});
  denylist.set_mode(v1::MODE_DENYLIST);
  v1::Attachment b = attach_interface(b_veth.host(), denylist);
  ASSERT_FALSE(b.id().empty());
  EXPECT_EQ(b.dns().ipv4(), "198.51.100.1") << "the bridge's";
  EXPECT_EQ(b.dns().ipv6(), "2001:db8::1");
  // Guest A's interface is attached before it joins the bridge, holding
  // the bridge's IPv4 address itself (a /32: no route): joining changes
  // the device the endpoint's sockets must take queries from, not that
  // address.
  add_address("", a_if, "198.51.100.1/32");
  denylist = dns_policy({"allowed.example"});
  denylist.set_mode(v1::MODE_DENYLIST);
  v1::Attachment a = attach_interface(a_if, denylist);
  ASSERT_FALSE(a.id().empty());
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

  // Guest B's bridge deleted under it: B's tap, released, has no address.
  must_run({"ip", "link", "del", bridge.name()});
  EXPECT_TRUE(endpoint_moves_to(b, "", "", milliseconds(2000)))
      << "the bridge deleted: " << daemon_->log();
  EXPECT_EQ(daemon_->log().find("dns_endpoint_not_moved"), std::string::npos) << daemon_->log();
}

}  // namespace
}  // namespace sebpf::testing
