// Datapath benchmark: ns per packet of the TC and cgroup_skb programs
// (BPF_PROG_TEST_RUN, averaged by the kernel over many repeats) at 0, 1k,
// 10k and 100k host rules plus 1k prefix rules per family; the cost a
// connect() pays for the hooks; and rule write rates, single and batched.
//
// Needs root. Prints a table; see docs/benchmarks.md for recorded results.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "datapath/datapath.h"
#include "datapath/netns.h"
#include "support/cgroup.h"
#include "support/packet_builder.h"
#include "support/process.h"

namespace {

using namespace sebpf;
using datapath::Action;
using datapath::Mode;
using datapath::Rule;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kRepeat = 2'000'000;

// Rule addresses are only map contents here; no traffic is sent to them.
net::IpAddress host4(uint32_t i) { return net::IpAddress::v4(htonl(0x10000000U + i)); }
net::IpAddress host6(uint32_t i) {
  std::array<uint8_t, 16> b = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01};
  b[12] = static_cast<uint8_t>(i >> 24);
  b[13] = static_cast<uint8_t>(i >> 16);
  b[14] = static_cast<uint8_t>(i >> 8);
  b[15] = static_cast<uint8_t>(i);
  return net::IpAddress::v6(b);
}

std::vector<Rule> make_rules(uint32_t hosts, uint32_t prefixes) {
  std::vector<Rule> rules;
  for (uint32_t i = 0; i < hosts; ++i) {
    rules.push_back({*net::IpPrefix::make(host4(i), 32), Action::kAllow, std::nullopt});
    rules.push_back({*net::IpPrefix::make(host6(i), 128), Action::kAllow, std::nullopt});
  }
  for (uint32_t i = 0; i < prefixes; ++i) {
    // 1k /24s from 32.0.0.0 and 1k /56s under 2001:db8:200::/40.
    rules.push_back({*net::IpPrefix::make(net::IpAddress::v4(htonl(0x20000000U + (i << 8))), 24),
                     Action::kAllow, std::nullopt});
    std::array<uint8_t, 16> b = {
        0x20, 0x01, 0x0d, 0xb8, 0x02, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    rules.push_back(
        {*net::IpPrefix::make(net::IpAddress::v6(b), 56), Action::kAllow, std::nullopt});
  }
  return rules;
}

// Average ns per run as measured by the kernel.
double ns_per_packet(int prog_fd, const std::vector<uint8_t>& packet, uint32_t ifindex,
                     uint32_t expect) {
  __sk_buff ctx{};
  ctx.ifindex = ifindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.data(),
              .data_size_in = static_cast<__u32>(packet.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = kRepeat);
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) return -1;
  if (opts.retval != expect) {
    std::fprintf(stderr, "unexpected verdict %u (wanted %u)\n", opts.retval, expect);
    return -1;
  }
  return opts.duration;  // the kernel reports the mean over repeats, in ns
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ns per UDP connect() (no packet is sent) from a child in `cgroup`.
double connect_ns(const std::string& cgroup) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const int rc = testing::run_in_child(
      [&] {
        std::FILE* f = std::fopen((cgroup + "/cgroup.procs").c_str(), "w");
        if (!f || std::fputs("0", f) < 0 || std::fclose(f) != 0) return 1;
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(9);
        inet_pton(AF_INET, "203.0.113.9", &dst.sin_addr);
        constexpr int kCalls = 200000;
        const int s = socket(AF_INET, SOCK_DGRAM, 0);
        const auto start = Clock::now();
        for (int i = 0; i < kCalls; ++i) {
          if (connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) return 2;
        }
        const double ns = seconds_since(start) * 1e9 / kCalls;
        return write(fds[1], &ns, sizeof(ns)) == sizeof(ns) ? 0 : 3;
      },
      std::chrono::seconds(60));
  double ns = -1;
  if (rc == 0 && read(fds[0], &ns, sizeof(ns)) != sizeof(ns)) ns = -1;
  close(fds[0]);
  close(fds[1]);
  return ns;
}

int fail(const Error& e) {
  std::fprintf(stderr, "error: %s\n", e.message().c_str());
  return 1;
}

}  // namespace

int main() {
  datapath::Config config;
  config.pin_dir = "";
  // Two attachments of 100k hosts each, and room for a replacement beside.
  config.max_host_rules = 524288;
  config.max_prefix_rules = 4096;
  auto dp_or = datapath::Datapath::open(config);
  if (!dp_or.ok()) return fail(dp_or.error());
  auto& dp = *dp_or;

  const std::string tag = std::to_string(getpid());
  const std::string iface = "sebpfb" + tag.substr(tag.size() > 6 ? tag.size() - 6 : 0);
  testing::run_command({"ip", "link", "add", iface, "type", "veth", "peer", "name", iface + "p"});
  // Removed on every way out of main, errors included.
  struct LinkGuard {
    std::string name;
    ~LinkGuard() { testing::run_command({"ip", "link", "del", name}); }
  } link_guard{iface};
  const uint32_t ifindex = if_nametoindex(iface.c_str());
  testing::TestCgroup cgroup("sebpf-bench-" + tag);

  // connect() without the hooks first, then with them.
  const double connect_bare = connect_ns(cgroup.path());

  auto tc = dp->attach_interface(iface, {});
  if (!tc.ok()) return fail(tc.error());
  auto cg = dp->attach_cgroup(cgroup.path(), {});
  if (!cg.ok()) return fail(cg.error());
  const std::vector<Rule> allow_connect = {
      {*net::IpPrefix::parse("203.0.113.9"), Action::kAllow, std::nullopt}};
  if (auto s = dp->replace_policy(cg->key, Mode::kAllowlist, allow_connect); !s.ok()) {
    return fail(s.error());
  }
  // As the daemon runs it: its namespace watched (one more lookup and a
  // helper call a socket call), and without, to show what that costs.
  const double connect_unwatched = connect_ns(cgroup.path());
  auto own_netns = datapath::netns_cookie(-1);
  if (!own_netns.ok()) return fail(own_netns.error());
  if (auto s = dp->watch_workload_netns(cg->key, *own_netns); !s.ok()) return fail(s.error());
  const double connect_hooked = connect_ns(cgroup.path());

  testing::ScopedCgroupMove in_cgroup(cgroup.path());  // cgroup_skb test packets get our cgroup
  const int tc_fd = dp->program_fd(datapath::Program::kTcGuard);
  const int cg_fd = dp->program_fd(datapath::Program::kCgroupEgress);
  const uint32_t tc_allow = static_cast<uint32_t>(TC_ACT_UNSPEC), tc_deny = TC_ACT_SHOT;

  std::printf(
      "# ns per packet, BPF_PROG_TEST_RUN x %u, allowlist mode, "
      "+1k prefix rules per family\n",
      kRepeat);
  std::printf("%-10s %-6s %10s %-8s %10s\n", "program", "family", "host_rules", "verdict",
              "ns/packet");
  for (uint32_t hosts : {0U, 1000U, 10000U, 100000U}) {
    const std::vector<Rule> rules = make_rules(hosts, 1000);
    const auto start = Clock::now();
    for (const auto& key : {tc->key, cg->key}) {
      if (auto s = dp->replace_policy(key, Mode::kAllowlist, rules); !s.ok())
        return fail(s.error());
    }
    const double load_s = seconds_since(start);
    // Allowed: a host rule (or, at 0 hosts, a prefix rule); denied: no match.
    const std::string a4 = hosts ? host4(hosts / 2).to_string() : "32.0.1.7";
    const std::string a6 = hosts ? host6(hosts / 2).to_string() : "2001:db8:200:700::1";
    struct Case {
      const char* family;
      const char* verdict;
      std::string dst;
      bool allowed;
    };
    const Case cases[] = {{"ipv4", "allowed", a4, true},
                          {"ipv4", "denied", "100.64.1.1", false},
                          {"ipv6", "allowed", a6, true},
                          {"ipv6", "denied", "2001:db8:ffff::1", false}};
    for (const Case& c : cases) {
      testing::PacketSpec spec;
      spec.src = std::string(c.family) == "ipv4" ? "198.51.100.2" : "2001:db8::2";
      spec.dst = c.dst;
      const auto packet = testing::build_packet(spec);
      std::printf("%-10s %-6s %10u %-8s %10.1f\n", "tc", c.family, hosts, c.verdict,
                  ns_per_packet(tc_fd, packet, ifindex, c.allowed ? tc_allow : tc_deny));
      std::printf("%-10s %-6s %10u %-8s %10.1f\n", "cgroup_skb", c.family, hosts, c.verdict,
                  ns_per_packet(cg_fd, packet, 0, c.allowed ? 1 : 0));
    }
    if (hosts == 100000) {
      const double n = static_cast<double>(rules.size()) * 2;
      std::printf(
          "# replace_policy of %zu rules on 2 attachments: %.2f s, %.0f rules/s "
          "(batched)\n",
          rules.size(), load_s, n / load_s);
    }
  }

  // A UDP datagram the rules allow also keeps its flow in the attachment's
  // table of opened flows (a lookup, and a write a second), so that the
  // peer's answers are not taken for the outside opening a flow. Next to
  // a TCP segment to the same host, which skips that.
  {
    testing::PacketSpec spec;
    spec.src = "198.51.100.2";
    spec.dst = host4(50000).to_string();  // a host rule of the 100k policy still applied
    spec.tcp_flags = 0x10;                // ACK
    const auto tcp = testing::build_packet(spec);
    spec.l4 = testing::L4::kUdp;
    const auto udp = testing::build_packet(spec);
    std::printf(
        "# allowed at 100k host rules, TCP ACK vs UDP (keeps its opened flow): tc %.1f vs %.1f ns, "
        "cgroup_skb %.1f vs %.1f ns\n",
        ns_per_packet(tc_fd, tcp, ifindex, tc_allow), ns_per_packet(tc_fd, udp, ifindex, tc_allow),
        ns_per_packet(cg_fd, tcp, 0, 1), ns_per_packet(cg_fd, udp, 0, 1));

    // What comes back, at the programs that track inbound flows: a UDP
    // datagram on a flow the outside opened finds it at the first lookup;
    // the answer on the flow above misses it and finds the opened flow
    // (explicitly allowed, so the second kind: three lookups).
    testing::PacketSpec answer = spec;
    std::swap(answer.src, answer.dst);
    std::swap(answer.sport, answer.dport);
    testing::PacketSpec opening = answer;
    opening.sport = 7000;  // another port of the peer: a flow of its own
    const auto answer_packet = testing::build_packet(answer);
    const auto opening_packet = testing::build_packet(opening);
    const int tc_track_fd = dp->program_fd(datapath::Program::kTcTrack);
    const int cg_in_fd = dp->program_fd(datapath::Program::kCgroupIngress);
    std::printf(
        "# inbound UDP, a flow the outside opened vs an answer on one the workload opened: "
        "tc %.1f vs %.1f ns, cgroup_skb %.1f vs %.1f ns\n",
        ns_per_packet(tc_track_fd, opening_packet, ifindex, tc_allow),
        ns_per_packet(tc_track_fd, answer_packet, ifindex, tc_allow),
        ns_per_packet(cg_in_fd, opening_packet, 0, 1),
        ns_per_packet(cg_in_fd, answer_packet, 0, 1));
  }

  // Loopback is open to cgroups unless a deny rule within it says otherwise,
  // so every loopback packet of a cgroup workload pays for that lookup.
  {
    testing::PacketSpec spec;
    spec.src = "127.0.0.1";
    spec.dst = "127.0.0.1";
    std::printf(
        "# cgroup_skb, a loopback packet (looks for a deny rule within loopback): %.1f ns\n",
        ns_per_packet(cg_fd, testing::build_packet(spec), 0, 1));
  }

  // The packet socket filter is on every interface of a cgroup workload's
  // namespace, so every frame sent there pays its way out: a test packet's
  // socket has no family, the early exit every frame but a packet
  // socket's takes.
  {
    testing::PacketSpec spec;
    spec.src = "198.51.100.2";
    spec.dst = "203.0.113.9";
    std::printf("# packet socket filter, a frame of any other socket: %.1f ns\n",
                ns_per_packet(dp->program_fd(datapath::Program::kTcPacketSockets),
                              testing::build_packet(spec), ifindex, tc_allow));
  }

  // Single writes: each add_rule is a lookup (to keep the other action's
  // side) and an update.
  {
    constexpr uint32_t kN = 20000;
    std::vector<Rule> rules;
    for (uint32_t i = 0; i < kN; ++i) {
      rules.push_back({*net::IpPrefix::make(host4(500000 + i), 32), Action::kAllow, std::nullopt});
    }
    if (auto s = dp->replace_policy(tc->key, Mode::kAllowlist, {}); !s.ok()) return fail(s.error());
    auto start = Clock::now();
    for (const Rule& r : rules) {
      if (auto s = dp->add_rule(tc->key, r); !s.ok()) return fail(s.error());
    }
    const double single = kN / seconds_since(start);
    if (auto s = dp->replace_policy(tc->key, Mode::kAllowlist, {}); !s.ok()) return fail(s.error());
    start = Clock::now();
    if (auto s = dp->add_rules(tc->key, rules); !s.ok()) return fail(s.error());
    const double batched = kN / seconds_since(start);
    std::printf("# rule writes: add_rule %.0f rules/s, add_rules (batch of %u) %.0f rules/s\n",
                single, kN, batched);
  }
  std::printf(
      "# UDP connect(): %.0f ns without hooks, %.0f ns with hooks (+%.0f ns); with no namespace "
      "watched %.0f ns\n",
      connect_bare, connect_hooked, connect_hooked - connect_bare, connect_unwatched);

  dp.reset();
  return 0;
}
