// The DNS end-to-end tests' fixture: the real daemon, a real authoritative
// upstream (knotd) on a test zone, and a workload in a cgroup that
// resolves names through its endpoint and then connects to the addresses
// it was given, over the test topology. The tests are in dns_*_e2e_test.cc,
// a file per part of the DNS issue.
#pragma once

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
#include <functional>
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
#include "support/process.h"
#include "support/within.h"

namespace sebpf::testing {

using std::chrono::milliseconds;

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeTxt = 16;

// Exit codes of the workload children: a DNS rcode, or no answer at all;
// below 200 the errno of the connection attempt (0: it worked).
inline constexpr int kRcodeBase = 200;
inline constexpr int kNoAnswer = 199;

// The zone knotd serves as example.
extern const char* const kExampleZone;

v1::Policy dns_policy(const std::vector<std::string>& allow_domains,
                      const std::vector<std::string>& deny_domains = {},
                      const std::vector<std::string>& deny_cidrs = {});

net::SocketAddress endpoint_of(const v1::Attachment& att);

// In the workload: ask `name` through the endpoint, then connect (TCP
// echo) to the first address of the answer.
int resolve_and_connect(const net::SocketAddress& endpoint, const std::string& name, uint16_t type,
                        bool tcp = false);

// In the workload: a fresh, unconnected UDP socket that has sent a query
// for `name` (type A) to `resolver`, as a stub resolver does; an invalid
// fd if the send failed.
UniqueFd send_udp_query(const net::SocketAddress& resolver, const std::string& name);

// connect() of a fresh UDP socket: 0 or the errno. Nothing is sent, but the
// connect hooks run (EPERM when they refuse), then the route lookup.
int udp_connect(const std::string& address, uint16_t port);

class DnsE2eTest : public DaemonE2eTest {
 protected:
  void SetUp() override {
    DaemonE2eTest::SetUp();
    if (IsSkipped() || HasFailure()) return;
    topo_->start_peer_server();
    const auto port = KnotServer::free_port();
    knot_ = std::make_unique<KnotServer>(
        dir() + "/knot", port, std::map<std::string, std::string>{{"example.", kExampleZone}});
    if (HasFailure()) return;
  }
  void TearDown() override {
    knot_.reset();
    DaemonE2eTest::TearDown();
  }

  // The daemon, forwarding to knotd (and to `before` first, if given),
  // under `systemd` if given.
  void start_with_upstream(const std::string& config_yaml = "", const std::string& before = "",
                           const FakeSystemd* systemd = nullptr) {
    std::vector<std::string> args;
    if (!before.empty()) args.insert(args.end(), {"--dns-upstream", before});
    args.insert(args.end(), {"--dns-upstream", knot_->address().to_string()});
    if (!config_yaml.empty()) args.insert(args.end(), {"--config", config_file(config_yaml)});
    start_daemon(args, "", systemd);
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

  // Starts the daemon with kSweepEverySecond, attaches a cgroup allowed
  // allowed.example and other.example, resolves and connects to both, and
  // waits until a sweep wrote what taught their hosts (each sweep after
  // new learning writes learned-chains.pb).
  v1::Attachment learn_both_until_a_sweep_writes_their_chains() {
    start_with_upstream(kSweepEverySecond);
    const auto att = attach_cgroup(dns_policy({"allowed.example", "other.example"}));
    resolve_and_connect_each(att, {"allowed.example", "other.example"});
    EXPECT_TRUE(within(std::chrono::milliseconds(5000), [&] {
      return std::filesystem::exists(state_dir() + "/learned-chains.pb") &&
             std::filesystem::exists(state_file());
    })) << "no sweep wrote what taught the hosts";
    return att;
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
  // Once `workload` (forked after `meet` was made) is ready, attaches its
  // cgroup by its pid with `policy`, hands the attachment to `on_attached`
  // (if given), then tells it to go on.
  void attach_by_pid_then_go(
      Rendezvous& meet, Child& workload, const v1::Policy& policy,
      const std::function<void(const v1::Attachment&)>& on_attached = nullptr) {
    meet.forked();
    ASSERT_TRUE(meet.wait_ready())
        << "the workload ended with " << workload.wait(std::chrono::seconds(1));
    v1::AttachRequest req;
    req.set_pid(workload.pid());
    *req.mutable_policy() = policy;
    v1::Attachment att;
    const grpc::Status attached = attach(req, &att);
    ASSERT_TRUE(attached.ok()) << attached.error_message();
    if (on_attached) on_attached(att);
    ASSERT_TRUE(meet.go());
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

}  // namespace sebpf::testing
