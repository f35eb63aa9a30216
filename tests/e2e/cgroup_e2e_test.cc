// A real cgroup holding real processes whose test hosts live in a network
// namespace: TCP, UDP, ICMP and IPv6 allowed or refused per mode, as the
// application sees it (EPERM at connect/sendto time, or nothing arriving).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "datapath/netns.h"
#include "datapath/netns_events.h"
#include "e2e_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::Mode;

// An IPv4/UDP datagram "from" the test host 198.51.100.2:kEchoPort to
// 127.0.0.1:dport: what a workload forges to plant a reply flow.
struct ForgedDatagram {
  iphdr ip;
  udphdr udp;
  char payload[8];
} __attribute__((packed));

ForgedDatagram forged_datagram(uint16_t dport) {
  ForgedDatagram pkt{};
  pkt.ip.version = 4;
  pkt.ip.ihl = 5;
  pkt.ip.ttl = 64;
  pkt.ip.protocol = IPPROTO_UDP;
  pkt.ip.tot_len = htons(sizeof(pkt));
  inet_pton(AF_INET, "198.51.100.2", &pkt.ip.saddr);
  pkt.ip.daddr = htonl(INADDR_LOOPBACK);
  pkt.udp.source = htons(kEchoPort);
  pkt.udp.dest = htons(dport);
  pkt.udp.len = htons(sizeof(pkt.udp) + sizeof(pkt.payload));
  std::memcpy(pkt.payload, "planted", 8);  // UDP checksum 0: none, allowed on IPv4
  return pkt;
}

bool write_file(const char* path, const char* text) {
  FILE* f = fopen(path, "we");
  if (f == nullptr) return false;
  const bool ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

uint16_t ip_checksum(const void* header, size_t len) {
  uint32_t sum = 0;
  const auto* bytes = static_cast<const uint8_t*>(header);
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t(bytes[i] << 8 | bytes[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// In a new network namespace: forges a UDP datagram from 198.51.100.2:kEchoPort
// to 127.0.0.1:kEchoPort+2 and checks that a socket of that port received
// it (so the datapath saw it arrive). 0 on success.
int plant_udp_flow_in_new_netns() {
  constexpr uint16_t kLocalPort = kEchoPort + 2;
  if (unshare(CLONE_NEWNET) != 0) return 91;
  const int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ctl < 0 || ioctl(ctl, SIOCGIFFLAGS, &ifr) != 0) return 92;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(ctl, SIOCSIFFLAGS, &ifr) != 0) return 93;
  close(ctl);

  const int rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(kLocalPort);
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (rx < 0 || bind(rx, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) return 94;

  ForgedDatagram pkt = forged_datagram(kLocalPort);
  // IP sockets cannot forge while the cgroup is enforcing, but a packet
  // socket can (it bypasses cgroup egress): hand the datagram to lo as if
  // it had arrived there. 127.0.0.1 arriving on a device is "martian"
  // unless route_localnet is on; this namespace is the test's own.
  if (!write_file("/proc/sys/net/ipv4/conf/lo/route_localnet", "1")) return 97;
  pkt.ip.check = ip_checksum(&pkt.ip, sizeof(pkt.ip));
  const int packet = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_IP);
  to.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
  to.sll_halen = ETH_ALEN;
  if (packet < 0 || sendto(packet, &pkt, sizeof(pkt), 0, reinterpret_cast<sockaddr*>(&to),
                           sizeof(to)) != static_cast<ssize_t>(sizeof(pkt))) {
    return 95;
  }
  timeval tv{.tv_sec = 2, .tv_usec = 0};
  setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[16];
  return recv(rx, buf, sizeof(buf), 0) == 8 ? 0 : 96;
}

// The errno of setsockopt(level, name, 1) on a new socket of the given kind,
// or 0 when it was accepted.
int set_option_on_new_socket(int family, int type, int protocol, int level, int name) {
  const int fd = socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) return 1000 + errno;
  const int one = 1;
  const int result = setsockopt(fd, level, name, &one, sizeof(one)) == 0 ? 0 : errno;
  close(fd);
  return result;
}

// The errno of sending a forged IPv4/UDP datagram through an IPPROTO_RAW
// socket to 127.0.0.1, or 0 when it was sent.
int send_through_header_writing_socket() {
  const ForgedDatagram pkt = forged_datagram(kEchoPort + 3);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (raw < 0) return 1000 + errno;
  const ssize_t n = sendto(raw, &pkt, sizeof(pkt), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  const int result = n < 0 ? errno : 0;
  close(raw);
  return result;
}

// What a workload trying to forge packets gets, as one code per attempt.
struct ForgeryOutcome {
  int header_writing_send, hdrincl4, transparent4, hdrincl6, transparent6, big_optval;
};

ForgeryOutcome try_forgery() {
  ForgeryOutcome o{};
  o.header_writing_send = send_through_header_writing_socket();
  o.hdrincl4 = set_option_on_new_socket(AF_INET, SOCK_RAW, IPPROTO_UDP, SOL_IP, IP_HDRINCL);
  o.transparent4 = set_option_on_new_socket(AF_INET, SOCK_DGRAM, 0, SOL_IP, IP_TRANSPARENT);
  o.hdrincl6 = set_option_on_new_socket(AF_INET6, SOCK_RAW, IPPROTO_UDP, SOL_IPV6, IPV6_HDRINCL);
  o.transparent6 = set_option_on_new_socket(AF_INET6, SOCK_DGRAM, 0, SOL_IPV6, IPV6_TRANSPARENT);
  // An option the datapath does not judge, with an optval over a page.
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::vector<char> big(8192, 0);
  big[0] = 1;
  o.big_optval =
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, big.data(), socklen_t(big.size())) == 0 ? 0 : errno;
  close(fd);
  return o;
}

// Runs try_forgery in the workload cgroup; the outcome comes back by pipe.

class CgroupE2eTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    start_servers_and_open();
  }

  ForgeryOutcome forgery_in_cgroup() {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const int rc = in_cgroup([&] {
      const ForgeryOutcome o = try_forgery();
      return write(fds[1], &o, sizeof(o)) == sizeof(o) ? 0 : 1;
    });
    ForgeryOutcome o{};
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(read(fds[0], &o, sizeof(o)), static_cast<ssize_t>(sizeof(o)));
    close(fds[0]);
    close(fds[1]);
    return o;
  }

  datapath::AttachmentKey attach(Mode mode, const std::vector<datapath::Rule>& rules = {}) {
    auto att = dp_->attach_cgroup(cgroup_->path(),
                                  {.mode = mode, .dns = {}, .direction = {}, .rules = {}});
    EXPECT_TRUE(att.ok()) << att.error().message();
    if (!att.ok()) return {};
    EXPECT_TRUE(dp_->replace_policy(att->key, mode, rules).ok());
    return att->key;
  }
};

TEST_F(CgroupE2eTest, AllowlistLetsOnlyListedHostsThrough) {
  attach(Mode::kAllowlist,
         {make_rule("198.51.100.2", Action::kAllow), make_rule("2001:db8::2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.2", kEchoPort, false); }), 0);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.3", kEchoPort, false); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("198.51.100.3", kEchoPort, true); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("198.51.100.2"); }), 0);
  EXPECT_NE(in_cgroup([] { return ping("198.51.100.3"); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("2001:db8::3", kEchoPort, false); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("2001:db8::2"); }), 0);
  EXPECT_NE(in_cgroup([] { return ping("2001:db8::3"); }), 0);
  // Loopback is always allowed.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::1", kEchoPort); }), 0);
}

TEST_F(CgroupE2eTest, V4MappedAddressesAreJudgedAsIpv4) {
  attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::ffff:198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("::ffff:198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("::ffff:198.51.100.3", kEchoPort, false); }), EPERM);
}

TEST_F(CgroupE2eTest, DenylistRefusesOnlyDeniedHosts) {
  attach(Mode::kDenylist,
         {make_rule("198.51.100.3", Action::kDeny), make_rule("2001:db8::3", Action::kDeny)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("203.0.113.2", kEchoPort, false); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("2001:db8::3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return ping("2001:db8::2"); }), 0);
}

TEST_F(CgroupE2eTest, BlockAllLeavesOnlyLoopback) {
  attach(Mode::kBlockAll, {make_rule("0.0.0.0/0", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return udp_echo("203.0.113.2", kEchoPort, false); }), EPERM);
  EXPECT_NE(in_cgroup([] { return ping("198.51.100.2"); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("127.0.0.1", kEchoPort); }), 0);
}

TEST_F(CgroupE2eTest, DisabledEnforcesNothing) {
  attach(Mode::kDisabled, {make_rule("0.0.0.0/0", Action::kDeny)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return ping("198.51.100.3"); }), 0);
}

TEST_F(CgroupE2eTest, ProcessesInNestedCgroupsAreCovered) {
  attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  TestCgroup nested("sebpf-e2e-" + topo_->tag() + "/inner");
  const int r = run_in_child([&] {
    if (!nested.add_self()) return 82;
    if (tcp_echo("198.51.100.2", kEchoPort) != 0) return 1;
    return tcp_echo("198.51.100.3", kEchoPort) == EPERM ? 0 : 2;
  });
  EXPECT_EQ(r, 0);
}

TEST_F(CgroupE2eTest, LiveConnectionIsCutWhenItsDestinationBecomesDenied) {
  const auto key = attach(Mode::kAllowlist, {make_rule("198.51.100.0/24", Action::kAllow)});
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  Child client([&] {
    if (!cgroup_->add_self()) return 82;
    TcpClient c;
    if (c.connect("198.51.100.2", kEchoPort) != 0 || c.echo() != 0) return 1;
    char go = 'r';
    if (write(to_parent[1], &go, 1) != 1 || read(to_child[0], &go, 1) != 1) return 2;
    // The connection is established; its packets must now be dropped.
    return c.echo() != 0 ? 0 : 3;
  });
  char ready = 0;
  ASSERT_EQ(read(to_parent[0], &ready, 1), 1);
  ok(dp_->add_rule(key, make_rule("198.51.100.2", Action::kDeny)));
  ASSERT_EQ(write(to_child[1], &ready, 1), 1);
  EXPECT_EQ(client.wait(), 0) << "the echo still came back after the deny rule";
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
}

TEST_F(CgroupE2eTest, InboundConnectionsGetTheirRepliesThroughAnAllowlist) {
  attach(Mode::kAllowlist);
  // A server inside the workload cgroup; a client in the test namespace.
  Child server([&]() -> int {
    if (!cgroup_->add_self()) return 82;
    serve_echo(kEchoPort + 1);
  });
  EXPECT_EQ(topo_->run_in_peer([] {
    return wait_for_tcp("198.51.100.1", kEchoPort + 1, std::chrono::seconds(5)) ? 0 : 1;
  }),
            0);
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort + 1); }), 0);
  EXPECT_EQ(topo_->run_in_peer([] { return udp_echo("198.51.100.1", kEchoPort + 1, false); }), 0);
  // But the workload itself still cannot open anything.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
}

// A workload that makes a network namespace of its own may forge any packet
// there (it is root in it). A datagram it forges "from" a test host to a
// socket of its own must not open replies to that host from the namespace
// that reaches the world: flows are kept per network namespace.
TEST_F(CgroupE2eTest, FlowsPlantedInAnotherNetworkNamespaceOpenNothing) {
  if (!dp_->netns_isolated_flows()) {
    GTEST_SKIP() << "this kernel lacks bpf_get_netns_cookie in cgroup_skb programs, so reply "
                    "flows are not kept per namespace (documented in docs/architecture.md)";
  }
  attach(Mode::kAllowlist);
  constexpr uint16_t kLocalPort = kEchoPort + 2;
  EXPECT_EQ(in_cgroup([] {
              // The socket that will try to "reply", in this namespace.
              const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
              sockaddr_in local{};
              local.sin_family = AF_INET;
              local.sin_port = htons(kLocalPort);
              if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
                return 90;
              }
              const int planted = run_in_child([] { return plant_udp_flow_in_new_netns(); });
              if (planted != 0) return planted;
              sockaddr_in peer{};
              peer.sin_family = AF_INET;
              peer.sin_port = htons(kEchoPort);
              inet_pton(AF_INET, "198.51.100.2", &peer.sin_addr);
              const char msg[] = "exfiltrate";
              const ssize_t n =
                  sendto(s, msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&peer), sizeof(peer));
              const int result = n < 0 ? errno : 0;
              close(s);
              return result;
            }),
            EPERM)
      << "a flow planted in another namespace let the workload send to a host it may not reach";
}

// Raw sockets that write their own IP header, and transparent sockets, let
// a workload send "from" any address (to loopback: a packet that opens a
// reply flow). While enforcing they are refused; disabled, nothing is.
TEST_F(CgroupE2eTest, SocketsThatForgeSourceAddressesAreRefusedWhileEnforcing) {
  const auto key = attach(Mode::kAllowlist);
  ForgeryOutcome o = forgery_in_cgroup();
  EXPECT_EQ(o.header_writing_send, EPERM);
  EXPECT_EQ(o.hdrincl4, EPERM);
  EXPECT_EQ(o.transparent4, EPERM);
  EXPECT_EQ(o.hdrincl6, EPERM);
  EXPECT_EQ(o.transparent6, EPERM);
  EXPECT_EQ(o.big_optval, 0) << "an option over a page that the datapath does not judge";
  auto c = dp_->counters(key);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_DENY_FORGED), 1U);
  EXPECT_EQ(c->get(SEBPF_HOOK_SOCKET, SEBPF_REASON_DENY_FORGED), 4U);

  ok(dp_->set_mode(key, Mode::kDisabled));
  o = forgery_in_cgroup();
  EXPECT_EQ(o.header_writing_send, 0);
  EXPECT_EQ(o.hdrincl4, 0);
  EXPECT_EQ(o.transparent4, 0);
  EXPECT_EQ(o.hdrincl6, 0);
  EXPECT_EQ(o.transparent6, 0);
}

// A workload process that keeps raw sockets across the test's steps: each
// command byte the test writes is answered with an int (0 or an errno).
class RawSocketWorkload {
 public:
  enum Command : char {
    kOpenWithHdrincl = 'h',  // a raw UDP socket with IP_HDRINCL: the errno
    kSendForged = 's',       // the forged datagram through it: the errno
    kSendIcmp = 'i',         // a new raw ICMP socket, an echo to loopback
  };

  explicit RawSocketWorkload(const TestCgroup& cgroup) {
    EXPECT_EQ(pipe(commands_), 0);
    EXPECT_EQ(pipe(answers_), 0);
    child_ = std::make_unique<Child>([&] {
      close(commands_[1]);  // so that the test closing its end ends the loop
      close(answers_[0]);
      if (!cgroup.add_self()) return 82;
      int raw = -1;
      char command = 0;
      while (read(commands_[0], &command, 1) == 1) {
        int answer = 0;
        if (command == kOpenWithHdrincl) {
          raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
          const int one = 1;
          answer =
              raw < 0 || setsockopt(raw, SOL_IP, IP_HDRINCL, &one, sizeof(one)) != 0 ? errno : 0;
        } else if (command == kSendForged) {
          answer = send_to_loopback(raw, forged_datagram(kEchoPort + 4));
        } else if (command == kSendIcmp) {
          const int icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
          const uint8_t echo[8] = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};  // checksummed
          answer = icmp < 0 ? errno : send_to_loopback(icmp, echo);
          close(icmp);
        }
        if (write(answers_[1], &answer, sizeof(answer)) != sizeof(answer)) return 83;
      }
      return 0;
    });
  }
  ~RawSocketWorkload() {
    close(commands_[1]);
    child_->wait();
    close(commands_[0]);
    close(answers_[0]);
    close(answers_[1]);
  }

  int run(Command command) {
    const char c = command;
    EXPECT_EQ(write(commands_[1], &c, 1), 1);
    int answer = -1;
    EXPECT_EQ(read(answers_[0], &answer, sizeof(answer)), static_cast<ssize_t>(sizeof(answer)));
    return answer;
  }

 private:
  template <typename Packet>
  static int send_to_loopback(int fd, const Packet& packet) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sendto(fd, &packet, sizeof(packet), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0
               ? errno
               : 0;
  }

  int commands_[2] = {-1, -1};
  int answers_[2] = {-1, -1};
  std::unique_ptr<Child> child_;
};

// Whether a datagram reached 127.0.0.1:port within a short wait.
// IP_HDRINCL is refused while enforcing, but a raw socket made before the
// cgroup was attached may have set it where no hook could see, and one
// that set it while the attachment was disabled was let. Once the
// attachment enforces, their packets are dropped; a raw socket made under
// the attachment that never asked for it keeps working.
TEST_F(CgroupE2eTest, RawSocketsThatMayWriteTheirOwnHeadersAreStoppedOnceEnforcing) {
  const UniqueFd rx = udp_listener("127.0.0.1", kEchoPort + 4);
  ASSERT_TRUE(rx.valid());
  const auto received = [](int fd) { return datagram_arrives(fd, milliseconds(300)); };

  {
    RawSocketWorkload before(*cgroup_);
    ASSERT_EQ(before.run(RawSocketWorkload::kOpenWithHdrincl), 0);
    ASSERT_EQ(before.run(RawSocketWorkload::kSendForged), 0);
    ASSERT_TRUE(received(rx.get())) << "the forged datagram does not arrive even unattached";
    const auto key = attach(Mode::kAllowlist);
    EXPECT_EQ(before.run(RawSocketWorkload::kSendForged), EPERM);
    EXPECT_FALSE(received(rx.get())) << "a header-writing socket older than the attach forged";
    EXPECT_EQ(before.run(RawSocketWorkload::kSendIcmp), 0) << "a raw socket made since";

    ok(dp_->set_mode(key, Mode::kDisabled));
    RawSocketWorkload disabled(*cgroup_);
    ASSERT_EQ(disabled.run(RawSocketWorkload::kOpenWithHdrincl), 0);
    ASSERT_EQ(disabled.run(RawSocketWorkload::kSendForged), 0);
    ASSERT_TRUE(received(rx.get()));
    ok(dp_->set_mode(key, Mode::kAllowlist));
    EXPECT_EQ(disabled.run(RawSocketWorkload::kSendForged), EPERM);
    EXPECT_FALSE(received(rx.get())) << "IP_HDRINCL set while disabled kept forging";
    auto c = dp_->counters(key);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_DENY_FORGED), 2U);
  }
}

TEST_F(CgroupE2eTest, CountersShowConnectsAndPacketsByReason) {
  const auto key = attach(Mode::kAllowlist, {make_rule("198.51.100.2", Action::kAllow)});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  auto c = dp_->counters(key);
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->get(SEBPF_HOOK_SOCKET, SEBPF_REASON_ALLOW_RULE), 1U);
  EXPECT_EQ(c->get(SEBPF_HOOK_SOCKET, SEBPF_REASON_DENY_DEFAULT), 1U);
  EXPECT_GE(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_ALLOW_RULE), 2U);  // SYN, data, ...
}

// The socket hooks report a call made from outside the network namespace
// an attachment is watched in: at once, then at most once a second
// (watched anew or not), and nothing from inside it or while none is
// watched. This is how the daemon learns that a process entered a
// namespace of its own.
TEST_F(CgroupE2eTest, SocketCallsFromAnotherNetworkNamespaceAreReported) {
  const auto key = attach(Mode::kAllowlist);
  auto ring = dp_->netns_events_map();
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  auto reports = datapath::NetnsEvents::open(std::move(*ring));
  ASSERT_TRUE(reports.ok()) << reports.error().message();
  const auto reported = [&] {
    auto taken = (*reports)->take();
    EXPECT_TRUE(taken.ok()) << taken.error().message();
    return taken.ok() ? *taken : std::set<uint64_t>{};
  };
  // A datagram the allowlist refuses at sendto(), in a namespace of the
  // call's own or ours: the hook ran either way.
  const auto send_from = [&](bool own_namespace) {
    return in_cgroup([own_namespace] {
      if (own_namespace && unshare(CLONE_NEWNET) != 0) return 91;
      return udp_echo("198.51.100.3", kEchoPort, false);
    });
  };
  const std::set<uint64_t> this_cgroup = {key.id};

  EXPECT_EQ(send_from(true), EPERM);
  EXPECT_TRUE(reported().empty()) << "no namespace watched yet";

  auto ours = datapath::netns_cookie(-1);
  ASSERT_TRUE(ours.ok()) << ours.error().message();
  ok(dp_->watch_workload_netns(key, *ours));
  EXPECT_EQ(send_from(false), EPERM);
  EXPECT_TRUE(reported().empty()) << "a call from the watched namespace";
  EXPECT_EQ(send_from(true), EPERM);
  EXPECT_EQ(reported(), this_cgroup);
  EXPECT_EQ(send_from(true), EPERM);
  EXPECT_TRUE(reported().empty()) << "reported a moment ago";
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(send_from(true), EPERM);
  EXPECT_EQ(reported(), this_cgroup) << "a second on";

  // Watched anew (the daemon followed the workload) does not start the
  // second again: a workload that makes namespace after namespace makes
  // the daemon follow it once a second at most.
  ok(dp_->watch_workload_netns(key, *ours));
  EXPECT_EQ(send_from(true), EPERM);
  EXPECT_TRUE(reported().empty());
}

}  // namespace
}  // namespace sebpf::testing
