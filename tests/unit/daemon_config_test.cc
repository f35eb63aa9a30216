// superebpfd's configuration file and target resolution: what parses, what
// is refused and how.
#include "daemon/daemon_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "daemon/bypass_check.h"
#include "daemon/target_resolver.h"
#include "support/test_dir.h"

namespace sebpf::daemon {
namespace {

// Every setting as text, to compare whole configurations.
std::vector<std::string> settings(const DaemonConfig& c) {
  auto ids = [](const std::vector<uint32_t>& v) {
    std::string out;
    for (uint32_t id : v) out += std::to_string(id) + ",";
    return out;
  };
  auto prefixes = [](const std::vector<net::IpPrefix>& v) {
    std::string out;
    for (const auto& p : v) out += p.to_string() + ",";
    return out;
  };
  std::string upstreams;
  for (const auto& u : c.dns_upstreams) upstreams += u.to_string() + ",";
  const datapath::Config& d = c.datapath;
  return {
      "socket.path=" + c.socket_path,
      "socket.group=" + c.socket_group,
      "socket.allowed_uids=" + ids(c.allowed_uids),
      "socket.allowed_gids=" + ids(c.allowed_gids),
      "state_dir=" + c.state_dir,
      "policy_file=" + c.policy_file,
      "detach_on_exit=" + std::to_string(c.detach_on_exit),
      "log_level=" + std::string(log_level_name(c.log_level)),
      "sweep_interval=" + std::to_string(c.sweep_interval.count()),
      "datapath.pin_dir=" + d.pin_dir,
      "datapath.max_attachments=" + std::to_string(d.max_attachments),
      "datapath.max_host_rules=" + std::to_string(d.max_host_rules),
      "datapath.max_prefix_rules=" + std::to_string(d.max_prefix_rules),
      "datapath.max_flows_per_attachment=" + std::to_string(d.max_flows_per_attachment),
      "datapath.dhcp_request_burst=" + std::to_string(d.dhcp_request_burst),
      "datapath.dhcp_request_interval=" + std::to_string(d.dhcp_request_interval.count()),
      "dns.port_first=" + std::to_string(c.dns_port_first),
      "dns.port_last=" + std::to_string(c.dns_port_last),
      "dns.cgroup_ipv4=" + c.dns_cgroup_ipv4,
      "dns.cgroup_ipv6=" + c.dns_cgroup_ipv6,
      "dns.upstreams=" + upstreams,
      "dns.resolv_conf=" + c.dns_resolv_conf,
      "dns.upstream_timeout=" + std::to_string(c.dns_upstream_timeout.count()),
      "dns.min_ttl=" + std::to_string(c.dns_min_ttl),
      "dns.max_ttl=" + std::to_string(c.dns_max_ttl),
      "dns.refusal_rcode=" + std::to_string(c.dns_refusal_rcode),
      "dns.max_inflight=" + std::to_string(c.dns_max_inflight),
      "dns.max_qps=" + std::to_string(c.dns_max_qps),
      "dns.max_tcp_clients=" + std::to_string(c.dns_max_tcp_clients),
      "dns.receive_buffer_bytes=" + std::to_string(c.dns_receive_buffer_bytes),
      "dns.max_upstream_qps=" + std::to_string(c.dns_max_upstream_qps),
      "dns.max_learned_hosts=" + std::to_string(c.dns_max_learned_hosts),
      "dns.max_domain_rules=" + std::to_string(c.dns_max_domain_rules),
      "datapath.max_cidr_rules_per_attachment=" + std::to_string(c.max_cidr_rules_per_attachment),
      "dns.never_learn=" + prefixes(c.dns_never_learn),
      "dns.threads=" + std::to_string(c.dns_threads),
      "dns.answer_spin=" + std::to_string(c.dns_answer_spin.count())};
}

// dist/superebpfd.yaml says it shows every key with its default: loaded
// over a configuration where every setting differs, it must give the
// defaults back (a renamed or forgotten key fails here, not on a host).
TEST(DaemonConfigTest, TheShippedConfigurationHasEveryKeyAtItsDefault) {
  DaemonConfig changed;
  ASSERT_TRUE(parse_daemon_config(R"(
socket: {path: /x/api.sock, group: "7", allowed_uids: [1], allowed_gids: [2]}
state_dir: /x/state
policy_file: /x/policy.yaml
detach_on_exit: true
log_level: debug
sweep_interval_seconds: 5
datapath: {pin_dir: /sys/fs/bpf/x, max_attachments: 8, max_host_rules: 8, max_prefix_rules: 8,
           max_cidr_rules_per_attachment: 8, max_flows_per_attachment: 64, dhcp_request_burst: 1,
           dhcp_request_interval_seconds: 1}
dns: {port_first: 30000, port_last: 30001, cgroup_ipv4: 127.0.0.2, cgroup_ipv6: "::2",
      upstreams: [192.0.2.53], resolv_conf: /x/resolv.conf, upstream_timeout_ms: 200,
      min_ttl_seconds: 1, max_ttl_seconds: 2, refuse_with: refused, max_inflight: 1,
      max_qps: 1, max_tcp_clients: 1, max_upstream_qps: 1, max_learned_hosts: 1, max_domain_rules: 1, never_learn: [],
      threads: 1,
      answer_spin_us: 0, receive_buffer_bytes: 0}
)",
                                  changed)
                  .ok());
  const auto defaults = settings(DaemonConfig{});
  const auto before = settings(changed);
  for (size_t i = 0; i < defaults.size(); ++i) ASSERT_NE(before[i], defaults[i]);

  const Status loaded = load_daemon_config(SEBPF_SOURCE_DIR "/dist/superebpfd.yaml", changed);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(settings(changed), defaults);
}

TEST(DaemonConfigTest, EveryKeyIsRead) {
  DaemonConfig c;
  const auto status = parse_daemon_config(R"(
socket:
  path: /run/sebpf-test/api.sock
  group: "1234"
  allowed_uids: [1000, 1001]
  allowed_gids: [2000]
state_dir: /var/lib/sebpf-test
policy_file: /etc/sebpf-test/policy.yaml
detach_on_exit: true
log_level: debug
sweep_interval_seconds: 30
datapath:
  pin_dir: /sys/fs/bpf/sebpf-test
  max_attachments: 2048
  max_host_rules: 200000
  max_prefix_rules: 1000
  max_cidr_rules_per_attachment: 500
  max_flows_per_attachment: 5000
  dhcp_request_burst: 2
  dhcp_request_interval_seconds: 60
dns:
  port_first: 30000
  port_last: 30999
  cgroup_ipv4: 127.0.0.53
  cgroup_ipv6: "::1"
  upstreams: [192.0.2.53, "[2001:db8::53]:5353"]
  resolv_conf: /etc/sebpf-test/resolv.conf
  upstream_timeout_ms: 700
  min_ttl_seconds: 5
  max_ttl_seconds: 600
  refuse_with: refused
  max_inflight: 100
  max_qps: 0
  max_tcp_clients: 8
  max_upstream_qps: 900
  max_learned_hosts: 1000
  max_domain_rules: 2000
  never_learn: [169.254.169.254/32, "fd00::/8"]
  threads: 3
  answer_spin_us: 200
  receive_buffer_bytes: 65536
)",
                                          c);
  ASSERT_TRUE(status.ok()) << status.error().message();
  EXPECT_EQ(c.socket_path, "/run/sebpf-test/api.sock");
  EXPECT_EQ(c.socket_group, "1234");
  EXPECT_EQ(c.allowed_uids, (std::vector<uint32_t>{1000, 1001}));
  EXPECT_EQ(c.allowed_gids, (std::vector<uint32_t>{2000}));
  EXPECT_EQ(c.state_file(), "/var/lib/sebpf-test/state.pb");
  EXPECT_EQ(c.policy_file, "/etc/sebpf-test/policy.yaml");
  EXPECT_TRUE(c.detach_on_exit);
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_EQ(c.sweep_interval, std::chrono::seconds(30));
  EXPECT_EQ(c.datapath.pin_dir, "/sys/fs/bpf/sebpf-test");
  EXPECT_EQ(c.datapath.max_attachments, 2048U);
  EXPECT_EQ(c.datapath.max_host_rules, 200000U);
  EXPECT_EQ(c.max_cidr_rules_per_attachment, 500U);
  EXPECT_EQ(c.policy_limits().max_cidr_rules, 500U);
  EXPECT_EQ(c.datapath.max_flows_per_attachment, 5000U);
  EXPECT_EQ(c.datapath.dhcp_request_burst, 2U);
  EXPECT_EQ(c.datapath.dhcp_request_interval, std::chrono::seconds(60));
  EXPECT_EQ(c.dns_port_first, 30000);
  EXPECT_EQ(c.dns_cgroup_ipv4, "127.0.0.53");
  ASSERT_EQ(c.dns_upstreams.size(), 2U);
  EXPECT_EQ(c.dns_upstreams[0].to_string(), "192.0.2.53:53");
  EXPECT_EQ(c.dns_upstreams[1].to_string(), "[2001:db8::53]:5353");
  EXPECT_EQ(c.dns_resolv_conf, "/etc/sebpf-test/resolv.conf");
  EXPECT_EQ(c.dns_upstream_timeout, std::chrono::milliseconds(700));
  EXPECT_EQ(c.dns_min_ttl, 5U);
  EXPECT_EQ(c.dns_max_ttl, 600U);
  EXPECT_EQ(c.dns_refusal_rcode, 5);
  EXPECT_EQ(c.dns_max_inflight, 100U);
  EXPECT_EQ(c.dns_max_qps, 0U);
  EXPECT_EQ(c.dns_max_tcp_clients, 8U);
  EXPECT_EQ(c.dns_max_upstream_qps, 900U);
  EXPECT_EQ(c.dns_max_learned_hosts, 1000U);
  EXPECT_EQ(c.dns_max_domain_rules, 2000U);
  EXPECT_EQ(c.dns_never_learn,
            (std::vector<net::IpPrefix>{*net::IpPrefix::parse("169.254.169.254/32"),
                                        *net::IpPrefix::parse("fd00::/8")}));
  EXPECT_EQ(c.dns_threads, 3U);
  EXPECT_EQ(c.dns_answer_spin, std::chrono::microseconds(200));
  EXPECT_EQ(c.dns_receive_buffer_bytes, 65536U);
  EXPECT_TRUE(validate_daemon_config(c).ok());
}

TEST(DaemonConfigTest, AnEmptyFileKeepsTheDefaults) {
  DaemonConfig c;
  ASSERT_TRUE(parse_daemon_config("", c).ok());
  EXPECT_EQ(c.socket_path, "/run/superebpf/superebpfd.sock");
  EXPECT_FALSE(c.detach_on_exit);
  EXPECT_TRUE(validate_daemon_config(c).ok());
}

TEST(DaemonConfigTest, MistakesAreErrorsNamingTheLineAndNothingChanges) {
  const std::pair<const char*, const char*> cases[] = {
      {"sockets: {}\n", "line 1: unknown key \"sockets\""},
      {"socket:\n  path: /a\n  path: /b\n", "line 3: key \"path\" appears twice"},
      {"detach_on_exit: yes\n", "line 1: detach_on_exit must be true or false"},
      {"log_level: loud\n", "line 1: log_level must be debug"},
      {"datapath:\n  max_attachments: 0\n", "line 2: datapath.max_attachments must be a whole"},
      {"datapath:\n  max_flows_per_attachment: -5\n",
       "line 2: datapath.max_flows_per_attachment must be a whole"},
      {"datapath:\n  max_flows_per_attachment: 10\n",
       "line 2: datapath.max_flows_per_attachment must be a whole number from 64"},
      {"datapath:\n  max_flows: 5000\n", "line 2: unknown key \"max_flows\" in datapath"},
      {"datapath:\n  dhcp_request_burst: 0\n",
       "line 2: datapath.dhcp_request_burst must be a whole"},
      {"datapath:\n  dhcp_request_interval_seconds: 7200\n",
       "line 2: datapath.dhcp_request_interval_seconds must be a whole"},
      {"dns:\n  port_first: 70000\n", "line 2: dns.port_first must be a whole"},
      {"socket:\n  allowed_uids: 5\n", "line 2: socket.allowed_uids must be a list"},
      {"state_dir: [a]\n", "line 1: state_dir must be a string"},
      {"socket: [\n", "config file: "},
      {"dns:\n  upstreams: [dns.example]\n", "line 2: an entry of dns.upstreams: \"dns.example\""},
      {"dns:\n  upstreams: [\"192.0.2.53:0\"]\n", "port must be a number from 1 to 65535"},
      {"dns:\n  refuse_with: drop\n", "line 2: dns.refuse_with must be nxdomain or refused"},
      {"dns:\n  upstream_timeout_ms: 1\n", "line 2: dns.upstream_timeout_ms must be a whole"},
      {"dns:\n  threads: 65\n", "line 2: dns.threads must be a whole"},
      {"dns:\n  answer_spin_us: 1001\n", "line 2: dns.answer_spin_us must be a whole"},
      {"dns:\n  max_learned_hosts: 0\n", "line 2: dns.max_learned_hosts must be a whole"},
      {"dns:\n  max_domain_rules: 0\n", "line 2: dns.max_domain_rules must be a whole"},
      {"datapath:\n  max_cidr_rules_per_attachment: -1\n",
       "line 2: datapath.max_cidr_rules_per_attachment must be a whole number from 0 to 16777216"},
      {"dns:\n  max_domain_rules: 1048577\n",
       "line 2: dns.max_domain_rules must be a whole number from 1 to 1048576"},
      {"dns:\n  receive_buffer_bytes: 100\n",
       "line 2: dns.receive_buffer_bytes must be 0 (the kernel's default) or at least 4096"},
      {"dns:\n  receive_buffer_bytes: 1073741824\n",
       "line 2: dns.receive_buffer_bytes must be a whole number from 0 to 268435456"},
      {"dns:\n  never_learn: [10.0.0.1/8]\n",
       "line 2: an entry of dns.never_learn: \"10.0.0.1/8\""},
      {"dns:\n  never_learn: [metadata.example]\n", "line 2: an entry of dns.never_learn"},
      {"dns:\n  never_learn: 10.0.0.0/8\n", "line 2: dns.never_learn must be a list"},
  };
  for (const auto& [yaml, expected] : cases) {
    DaemonConfig c;
    const auto status = parse_daemon_config(yaml, c);
    ASSERT_FALSE(status.ok()) << yaml;
    EXPECT_NE(status.error().message().find(expected), std::string::npos)
        << yaml << " -> " << status.error().message();
    EXPECT_EQ(c.socket_path, DaemonConfig().socket_path) << "a failed parse changed the config";
  }
}

TEST(DaemonConfigTest, ValidationCatchesWhatNeedsSeveralKeys) {
  DaemonConfig c;
  c.dns_port_first = 500;
  c.dns_port_last = 400;
  EXPECT_FALSE(validate_daemon_config(c).ok());
  c = DaemonConfig();
  c.state_dir = "relative/dir";
  EXPECT_NE(validate_daemon_config(c).error().message().find("state_dir"), std::string::npos);
  c = DaemonConfig();
  c.dns_cgroup_ipv4 = "::1";
  EXPECT_NE(validate_daemon_config(c).error().message().find("dns.cgroup_ipv4"), std::string::npos);
  c = DaemonConfig();
  c.dns_min_ttl = 100;
  c.dns_max_ttl = 10;
  EXPECT_NE(validate_daemon_config(c).error().message().find("dns.min_ttl_seconds"),
            std::string::npos);
}

class TargetResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.made());
    std::filesystem::create_directories(root() + "/cg/a/b");
    std::filesystem::create_directories(root() + "/proc/42");
    std::filesystem::create_directories(root() + "/proc/43");
    std::filesystem::create_directories(root() + "/proc/44");
    std::ofstream(root() + "/proc/42/cgroup") << "12:cpu:/ignored\n0::/a/b\n";
    std::ofstream(root() + "/proc/43/cgroup") << "0::/a/gone (deleted)\n";
    std::ofstream(root() + "/proc/44/cgroup") << "3:memory:/only-v1\n";
  }
  const std::string& root() const { return dir_.path(); }
  // A thread's directory in the fake /proc (<proc>/<pid>/task/<tid>, made
  // with its ns/), where the bypass check reads each thread; the main
  // thread's tid is its pid.
  std::string task(const std::string& pid, const std::string& tid = "") const {
    const std::string dir = root() + "/proc/" + pid + "/task/" + (tid.empty() ? pid : tid);
    std::filesystem::create_directories(dir + "/ns");
    return dir;
  }
  // <mount>/user/session/agent, with user and session delegated to `user`
  // (their cgroup.procs this test's user's, or nobody's when run as root),
  // and the fake /proc's own cgroup namespace and mountinfo, the hierarchy
  // mounted with nsdelegate or without.
  struct DelegatedTree {
    std::string mount, delegated, session, cgroup, proc;
    uid_t user;
  };
  DelegatedTree delegated_tree(bool ns_delegate) const {
    DelegatedTree t;
    t.mount = root() + "/cg";
    t.delegated = t.mount + "/user";
    t.session = t.delegated + "/session";
    t.cgroup = t.session + "/agent";
    t.proc = root() + "/proc";
    t.user = geteuid() == 0 ? 65534 : geteuid();
    std::filesystem::create_directories(t.cgroup);
    for (const std::string& dir : {t.delegated, t.session}) {
      std::ofstream(dir + "/cgroup.procs");
      if (geteuid() == 0) {
        EXPECT_EQ(chown((dir + "/cgroup.procs").c_str(), t.user, t.user), 0);
      }
    }
    std::filesystem::create_directories(t.proc + "/self/ns");
    std::ofstream(t.proc + "/self/ns/cgroup") << "the host's";
    std::ofstream(t.proc + "/self/mountinfo")
        << "25 1 0:23 / " << t.mount << " rw shared:9 - cgroup2 cgroup2 rw"
        << (ns_delegate ? ",nsdelegate" : "") << "\n";
    return t;
  }

  testing::TestDir dir_{"sebpf-resolver"};
};

TEST_F(TargetResolverTest, CgroupPathsAreMadeCanonicalAndKeptInsideTheMount) {
  const std::string mount = root() + "/cg";
  EXPECT_EQ(*resolve_cgroup_path(mount + "/a/b", mount), mount + "/a/b");
  EXPECT_EQ(*resolve_cgroup_path("a/b/", mount), mount + "/a/b");
  EXPECT_EQ(*resolve_cgroup_path(mount + "/a/./b/../b", mount), mount + "/a/b");
  EXPECT_EQ(resolve_cgroup_path("a/../../..", mount).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(resolve_cgroup_path("/tmp", mount).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(resolve_cgroup_path("nope", mount).error().code(), Errc::kNotFound);
  EXPECT_EQ(resolve_cgroup_path("", mount).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(resolve_cgroup_path(std::string("a\0b", 3), mount).error().code(),
            Errc::kInvalidArgument);
}

TEST_F(TargetResolverTest, APidsCgroupComesFromItsV2Line) {
  const std::string mount = root() + "/cg";
  const std::string proc = root() + "/proc";
  EXPECT_EQ(*cgroup_path_of_pid(42, mount, proc), mount + "/a/b");
  EXPECT_EQ(cgroup_path_of_pid(43, mount, proc).error().code(), Errc::kNotFound);
  EXPECT_EQ(cgroup_path_of_pid(44, mount, proc).error().code(), Errc::kFailedPrecondition);
  EXPECT_EQ(cgroup_path_of_pid(45, mount, proc).error().code(), Errc::kNotFound);
  EXPECT_EQ(cgroup_path_of_pid(0, mount, proc).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(cgroup_path_of_pid(-3, mount, proc).error().code(), Errc::kInvalidArgument);
}

TEST(DaemonCgroupTest, ACgroupHoldingTheDaemonIsRefusedItsNeighboursAreNot) {
  const std::string daemon = "/cg/system.slice/superebpfd.service";
  for (const std::string& target : {daemon, std::string("/cg/system.slice"), std::string("/cg")}) {
    const Status s = refuse_daemon_cgroup(target, daemon, "cgroup_path");
    ASSERT_FALSE(s.ok()) << target;
    EXPECT_EQ(s.error().code(), Errc::kInvalidArgument);
    EXPECT_EQ(s.error().message().rfind("cgroup_path: " + target + " holds superebpfd itself", 0),
              0U)
        << s.error().message();
  }
  for (const std::string& target :
       {std::string("/cg/system.slice/superebpfd.service/child"),  // below the daemon
        std::string("/cg/system.slice/superebpfd.service2"),       // a name it begins
        std::string("/cg/system.slice/superebpfd"),                // a name that begins it
        std::string("/cg/machine.slice/vm-7")}) {
    EXPECT_TRUE(refuse_daemon_cgroup(target, daemon, "pid").ok()) << target;
  }
}

// CAP_NET_RAW is bit 13 of the bounding set (0x2000), CAP_NET_ADMIN bit 12
// (0x1000).
TEST_F(TargetResolverTest, ProcessesThatMayGetPacketsPastTheCgroupProgramsAreNamedOthersAreNot) {
  const std::string cgroup = root() + "/cg/a";
  const std::string proc = root() + "/proc";
  const auto status = [&](const std::string& pid, const std::string& bounding) {
    std::ofstream(task(pid) + "/status")
        << "Name:\tworkload\nState:\tS (sleeping)\nCapEff:\t0000000000000000\nCapBnd:\t" << bounding
        << "\n";
  };
  status("100", "000001ffffffcfff");  // everything but CAP_NET_RAW and CAP_NET_ADMIN
  status("101", "00000000a80425fb");  // Docker's default set: CAP_NET_RAW, not CAP_NET_ADMIN
  status("102", "000001ffffffffff");  // root
  status("103", "000001ffffffdfff");  // everything but CAP_NET_RAW
  // 104's main thread dropped both; thread 105, started before, kept
  // CAP_NET_ADMIN (bounding sets are each thread's own).
  status("104", "000001ffffffcfff");
  std::ofstream(task("104", "105") + "/status") << "CapBnd:\t000001ffffffdfff\n";
  std::ofstream(cgroup + "/cgroup.procs") << "100\n";
  EXPECT_TRUE(cgroup_bypass_warnings(cgroup, 0, root() + "/cg", proc).empty());

  std::ofstream(cgroup + "/b/cgroup.procs") << "101\n102\n999\n103\n104\n";  // 999: gone
  const auto warnings = cgroup_bypass_warnings(cgroup, 0, root() + "/cg", proc);
  ASSERT_EQ(warnings.size(), 2U);
  EXPECT_NE(warnings[0].find("processes 101, 102 may open packet sockets"), std::string::npos)
      << warnings[0] << " (processes of descendant cgroups count)";
  EXPECT_NE(warnings[0].find("--cap-drop NET_RAW"), std::string::npos) << "says what to do";
  EXPECT_NE(warnings[1].find("processes 102, 103, 104 may reconfigure their network namespace"),
            std::string::npos)
      << warnings[1];
  EXPECT_NE(warnings[1].find("--cap-drop NET_ADMIN"), std::string::npos) << "says what to do";
  for (const std::string& w : warnings) EXPECT_EQ(w.find("100"), std::string::npos) << w;
}

// The packet socket filter holds CAP_NET_RAW inside the namespace it was
// put in at attach time; a process elsewhere is still named. Each thread
// is where it is: a process one of whose threads entered another
// namespace is named; one whose main thread has exited is where its
// running threads are.
TEST_F(TargetResolverTest, PacketSocketsAreABypassOnlyOutsideTheGuardedNamespace) {
  const std::string cgroup = root() + "/cg/a";
  const std::string proc = root() + "/proc";
  for (const std::string pid : {"101", "102"}) {
    std::ofstream(task(pid) + "/status") << "CapBnd:\t00000000a80425fb\n";  // Docker's
    std::ofstream(task(pid) + "/ns/net") << pid;                            // a namespace each
  }
  // 103's main thread exited while thread 104 runs, in the guarded
  // namespace: the zombie, whose namespaces are gone, is not named.
  std::ofstream(task("103") + "/status") << "State:\tZ (zombie)\nCapBnd:\t00000000a80425fb\n";
  std::ofstream(task("103", "104") + "/status") << "CapBnd:\t00000000a80425fb\n";
  std::filesystem::create_hard_link(task("101") + "/ns/net", task("103", "104") + "/ns/net");
  // 105's main thread is in the guarded namespace, its thread 106 in
  // 102's.
  std::ofstream(task("105") + "/status") << "CapBnd:\t00000000a80425fb\n";
  std::ofstream(task("105", "106") + "/status") << "CapBnd:\t00000000a80425fb\n";
  std::filesystem::create_hard_link(task("101") + "/ns/net", task("105") + "/ns/net");
  std::filesystem::create_hard_link(task("102") + "/ns/net", task("105", "106") + "/ns/net");
  std::ofstream(cgroup + "/cgroup.procs") << "101\n102\n103\n105\n";
  struct stat guarded {};
  ASSERT_EQ(stat((task("101") + "/ns/net").c_str(), &guarded), 0);

  const auto warnings = cgroup_bypass_warnings(cgroup, guarded.st_ino, root() + "/cg", proc);
  ASSERT_EQ(warnings.size(), 1U);
  EXPECT_EQ(warnings[0].find("processes 102, 105 may open packet sockets"), 0U) << warnings[0];
  EXPECT_NE(warnings[0].find("--cap-drop NET_RAW"), std::string::npos) << "says what to do";
}

// A user to whom a cgroup above the attached one is delegated may move
// their processes out of it: such processes are named, with the cgroup to
// attach instead. Another user's are not. On a hierarchy mounted with
// nsdelegate, nor are those in a cgroup namespace of their own rooted at
// the attached cgroup (a container's, made at its cgroup); one rooted
// above it is named with the outermost cgroup its processes reach, and one
// whose root cannot be told as if it had none.
TEST_F(TargetResolverTest, ProcessesWhoseUserMayMoveThemOutOfTheCgroupAreNamed) {
  const DelegatedTree tree = delegated_tree(true);
  const std::string &mount = tree.mount, &delegated = tree.delegated, &session = tree.session,
                    &cgroup = tree.cgroup, &proc = tree.proc;
  const uid_t user = tree.user;
  // A namespace's root, by the task the lookup is given, and the tasks it
  // was asked about.
  std::map<std::string, Result<std::string>> roots;
  std::vector<std::string> asked;
  const auto root_of = [&](const std::string& task, const std::string& in) -> Result<std::string> {
    EXPECT_EQ(in, mount);
    asked.push_back(task);
    const auto it = roots.find(task);
    return it == roots.end() ? Error(Errc::kInternal, "not in the test") : it->second;
  };
  // `cgroupns`: "" the host's, else a process's whose namespace it shares.
  const auto process = [&](const std::string& pid, uid_t uid, const std::string& cgroupns,
                           Result<std::string> cgroupns_root = Error(Errc::kInternal, "unused")) {
    std::ofstream(task(pid) + "/status")
        << "Uid:\t0\t" << uid << "\t" << uid << "\t" << uid << "\nCapBnd:\t0000000000000000\n";
    if (cgroupns.empty()) {
      std::filesystem::create_hard_link(proc + "/self/ns/cgroup", task(pid) + "/ns/cgroup");
    } else if (cgroupns == pid) {
      std::ofstream(task(pid) + "/ns/cgroup") << pid;
      roots.emplace(task(pid), std::move(cgroupns_root));
    } else {
      std::filesystem::create_hard_link(task(cgroupns) + "/ns/cgroup", task(pid) + "/ns/cgroup");
    }
  };
  process("100", user, "");              // may write the delegated cgroup.procs
  process("101", user, "101", cgroup);   // held by a cgroup namespace of its own
  process("102", user + 1, "");          // another user
  process("103", user, "103", session);  // a namespace rooted between the two
  process("104", user, "104", Error(Errc::kUnavailable, "moved while looked at"));
  process("105", user, "103");  // 103's namespace, looked up once
  std::ofstream(cgroup + "/cgroup.procs") << "100\n101\n102\n103\n104\n105\n";

  const auto warnings = cgroup_bypass_warnings(cgroup, 0, mount, proc, root_of);
  ASSERT_EQ(warnings.size(), 2U);
  EXPECT_EQ(warnings[0].find("processes 100, 104 may move themselves out of this attachment: they "
                             "run as uid " +
                             std::to_string(user) + ", to whom " + delegated + " is delegated"),
            0U)
      << warnings[0] << " (the outermost cgroup delegated to that user)";
  EXPECT_NE(warnings[0].find("Attach " + delegated + " instead"), std::string::npos);
  EXPECT_EQ(warnings[1].find("processes 103, 105 may move themselves out of this attachment: they "
                             "run as uid " +
                             std::to_string(user) + ", to whom " + session + " is delegated"),
            0U)
      << warnings[1] << " (the outermost cgroup under their namespace's root)";
  EXPECT_EQ(asked, (std::vector<std::string>{task("101"), task("103"), task("104")}));
  EXPECT_TRUE(cgroup_bypass_warnings(session, 0, delegated, proc, root_of).empty())
      << "the cgroup's own cgroup.procs, or one at or above the hierarchy's root, moves nothing "
         "out";
}

// On a hierarchy mounted without nsdelegate, a cgroup namespace holds a
// process only as far as the cgroup v2 mounts it sees (and one it may
// make, rooted at its namespace's root): a container that mounts its own
// is held at its namespace's root, one given the host's hierarchy is not.
TEST_F(TargetResolverTest, WithoutNsdelegateAProcessReachesWhatItsMountsShow) {
  const DelegatedTree tree = delegated_tree(false);
  const std::string &mount = tree.mount, &delegated = tree.delegated, &session = tree.session,
                    &cgroup = tree.cgroup, &proc = tree.proc;
  const uid_t user = tree.user;
  const std::map<std::string, std::string> roots = {
      {task("101"), cgroup}, {task("102"), cgroup}, {task("103"), cgroup}, {task("104"), session}};
  const auto root_of = [&](const std::string& task, const std::string&) -> Result<std::string> {
    return roots.at(task);
  };
  // Each in a cgroup namespace and a mount namespace of its own, whose
  // cgroup v2 mounts are rooted at `mounted` (cgroups as the hierarchy
  // names them); none: its mountinfo cannot be read.
  const auto process = [&](const std::string& pid, std::optional<std::string> mounted) {
    std::ofstream(task(pid) + "/status")
        << "Uid:\t0\t" << user << "\t" << user << "\t" << user << "\nCapBnd:\t0\n";
    std::ofstream(task(pid) + "/ns/cgroup") << pid;
    std::ofstream(task(pid) + "/ns/mnt") << pid;
    if (mounted) {
      std::ofstream(task(pid) + "/mountinfo")
          << "40 30 0:23 " << *mounted << " /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    }
  };
  process("101", "/user/session/agent");  // its own, made in its namespace
  process("102", "/");                    // the host's, given to it
  process("103", std::nullopt);
  process("104", "/user/session/agent");  // a namespace rooted at the session
  std::ofstream(cgroup + "/cgroup.procs") << "101\n102\n103\n104\n";

  const auto warnings = cgroup_bypass_warnings(cgroup, 0, mount, proc, root_of);
  ASSERT_EQ(warnings.size(), 2U);
  EXPECT_EQ(warnings[0].find("processes 102, 103 may move themselves out of this attachment: they "
                             "run as uid " +
                             std::to_string(user) + ", to whom " + delegated + " is delegated"),
            0U)
      << warnings[0];
  EXPECT_EQ(warnings[1].find("process 104 may move themselves out of this attachment: they "
                             "run as uid " +
                             std::to_string(user) + ", to whom " + session + " is delegated"),
            0U)
      << warnings[1] << " (it may mount the hierarchy anew, rooted at its namespace's root)";
}

// A group whose members may write the cgroup.procs of a cgroup above the
// attached one, or anyone when it is writable by all, may move its
// processes out of it too: such processes are named, with the mode to
// take away. Root's are not (root may write it whatever its mode), nor
// those of users outside the group.
TEST_F(TargetResolverTest, ProcessesOfAGroupOrAnyoneWhoMayWriteACgroupProcsAboveAreNamed) {
  const std::string mount = root() + "/cg";
  const std::string team = mount + "/team";
  const std::string open = mount + "/open";
  std::filesystem::create_directories(team + "/agent");
  std::filesystem::create_directories(open + "/agent");
  std::ofstream(team + "/cgroup.procs");
  std::ofstream(open + "/cgroup.procs");
  // Owned by this test's user, whom no process here runs as: only the
  // mode decides.
  ASSERT_EQ(chmod((team + "/cgroup.procs").c_str(), 0664), 0);
  ASSERT_EQ(chmod((open + "/cgroup.procs").c_str(), 0666), 0);
  struct stat procs {};
  ASSERT_EQ(stat((team + "/cgroup.procs").c_str(), &procs), 0);
  const gid_t group = procs.st_gid;
  const std::string proc = root() + "/proc";
  std::filesystem::create_directories(proc + "/self/ns");
  std::ofstream(proc + "/self/ns/cgroup") << "the host's";
  const auto process = [&](const std::string& pid, uid_t uid, gid_t gid,
                           const std::string& groups) {
    std::ofstream(task(pid) + "/status")
        << "Uid:\t" << uid << "\t" << uid << "\t" << uid << "\t" << uid << "\nGid:\t" << gid << "\t"
        << gid << "\t" << gid << "\t" << gid << "\nGroups:\t" << groups
        << "\nCapBnd:\t0000000000000000\n";
    std::filesystem::create_hard_link(proc + "/self/ns/cgroup", task(pid) + "/ns/cgroup");
  };
  const uid_t user = 64000;
  process("300", user, group, "");                                // the group, its own
  process("301", user, group + 1, std::to_string(group) + " 7");  // the group, a supplementary
  process("302", user, group + 1, "7");                           // not in the group
  process("303", 0, group, "");                                   // root
  std::ofstream(team + "/agent/cgroup.procs") << "300\n301\n302\n303\n";
  process("304", user + 1, group + 1, "");
  std::ofstream(open + "/agent/cgroup.procs") << "304\n303\n";

  const auto in_team = cgroup_bypass_warnings(team + "/agent", 0, mount, proc);
  ASSERT_EQ(in_team.size(), 1U);
  EXPECT_EQ(in_team[0].find("processes 300, 301 may move themselves out of this attachment: they "
                            "run with gid " +
                            std::to_string(group) + ", which may write " + team +
                            "/cgroup.procs (it is group-writable)"),
            0U)
      << in_team[0];
  EXPECT_NE(in_team[0].find("chmod g-w"), std::string::npos);

  const auto in_open = cgroup_bypass_warnings(open + "/agent", 0, mount, proc);
  // Group-writable too (0666): 304 is not in the group, so named as anyone.
  ASSERT_EQ(in_open.size(), 1U);
  EXPECT_EQ(in_open[0].find("process 304 may move themselves out of this attachment: anyone may "
                            "write " +
                            open + "/cgroup.procs (it is writable by all)"),
            0U)
      << in_open[0];
  EXPECT_NE(in_open[0].find("chmod o-w"), std::string::npos);
}

// A cgroup's namespace is ours, another, or an error: never a guess, which
// would put the DNS endpoint and the packet socket filter where the
// workload is not.
TEST_F(TargetResolverTest, AWorkloadsNamespaceIsOursAnotherOrAnErrorNeverAGuess) {
  const std::string proc = root() + "/proc";
  std::filesystem::create_directories(proc + "/self/ns");
  std::ofstream(proc + "/self/ns/net") << "ours";
  const auto cgroup_of = [&](const std::string& name, const std::string& pid) {
    const std::string cgroup = root() + "/cg/" + name;
    std::filesystem::create_directories(cgroup);
    std::ofstream(cgroup + "/cgroup.threads") << pid;
    if (!pid.empty()) std::filesystem::create_directories(proc + "/" + pid + "/ns");
    return cgroup;
  };
  const std::string empty = cgroup_of("empty", "");
  const std::string in_ours = cgroup_of("in-ours", "200");
  std::filesystem::create_hard_link(proc + "/self/ns/net", proc + "/200/ns/net");
  const std::string in_theirs = cgroup_of("in-theirs", "201");
  std::ofstream(proc + "/201/ns/net") << "theirs";
  const std::string unopenable = cgroup_of("unopenable", "202");
  std::filesystem::create_symlink("net", proc + "/202/ns/net");  // ELOOP
  const std::string exiting = cgroup_of("exiting", "203");       // no ns/net: gone
  // A process whose main thread (204, no ns/net) exited while thread 205
  // runs: cgroup.procs lists 204, cgroup.threads 205.
  const std::string main_thread_exited = cgroup_of("main-thread-exited", "205");
  std::ofstream(main_thread_exited + "/cgroup.procs") << "204";
  std::ofstream(proc + "/205/ns/net") << "theirs";

  using Where = CgroupNetns::Where;
  auto none = netns_of_cgroup(empty, proc);
  ASSERT_TRUE(none.ok()) << none.error().message();
  EXPECT_EQ(none->where, Where::kEmpty) << "no process yet: nothing to tell";
  EXPECT_FALSE(none->fd);
  auto ours = netns_of_cgroup(in_ours, proc);
  ASSERT_TRUE(ours.ok()) << ours.error().message();
  EXPECT_EQ(ours->where, Where::kOurs);
  EXPECT_FALSE(ours->fd);
  const auto inode_of = [](const std::string& file) {
    struct stat st {};
    return stat(file.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  EXPECT_EQ(ours->inode, inode_of(proc + "/self/ns/net"));
  auto theirs = netns_of_cgroup(in_theirs, proc);
  ASSERT_TRUE(theirs.ok()) << theirs.error().message();
  EXPECT_EQ(theirs->where, Where::kForeign);
  EXPECT_TRUE(theirs->fd);
  EXPECT_EQ(theirs->inode, inode_of(proc + "/201/ns/net"));
  EXPECT_EQ(theirs->thread, 201) << "whose /proc/<tid>/net is the namespace's";
  auto through_a_thread = netns_of_cgroup(main_thread_exited, proc);
  ASSERT_TRUE(through_a_thread.ok()) << through_a_thread.error().message();
  EXPECT_EQ(through_a_thread->where, Where::kForeign) << "found through the running thread";
  EXPECT_EQ(through_a_thread->thread, 205);
  EXPECT_TRUE(through_a_thread->fd);

  const auto unopened = netns_of_cgroup(unopenable, proc);
  ASSERT_FALSE(unopened.ok());
  EXPECT_NE(unopened.error().message().find(proc + "/202/ns/net"), std::string::npos)
      << unopened.error().message();
  const auto gone = netns_of_cgroup(exiting, proc);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), Errc::kUnavailable) << "one call later may find them settled";
  EXPECT_NE(gone.error().message().find("kept exiting"), std::string::npos);
}

TEST(InterfaceNameTest, OnlyWhatTheKernelAccepts) {
  EXPECT_TRUE(validate_interface_name("tap-vm7").ok());
  EXPECT_TRUE(validate_interface_name(std::string(15, 'x')).ok());
  for (const std::string& bad :
       {std::string(), std::string(16, 'x'), std::string("a/b"), std::string("a b"),
        std::string("a:1"), std::string("."), std::string(".."), std::string("a\tb")}) {
    EXPECT_EQ(validate_interface_name(bad).error().code(), Errc::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace sebpf::daemon
