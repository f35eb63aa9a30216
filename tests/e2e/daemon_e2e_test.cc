// superebpfd end to end: attach through the API and see real traffic obey
// the policy; targets that vanish are detached within a second; a SIGKILL
// and restart keeps ids, policy and enforcement; a damaged state file is
// reported; bad input is refused naming the field.
#include <bpf/bpf.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "daemon_fixture.h"
#include "datapath/types.h"
#include "foreign_programs.h"
#include "support/netns.h"
#include "support/process.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

std::chrono::system_clock::time_point soon() {
  return std::chrono::system_clock::now() + std::chrono::seconds(10);
}

// A client calling List every 5 ms from a thread of its own until
// finish(): what one sees across a reload or a restart. A call that reaches
// the old process as its gRPC server shuts down may be CANCELLED (the
// server cancels the calls it has not started, grpc/grpc#41785); clients
// retry those, so they are counted apart from failures.
class ApiCaller {
 public:
  explicit ApiCaller(v1::DaemonService::Stub& stub) : thread_([this, &stub] { run(stub); }) {}
  ~ApiCaller() { finish(); }
  ApiCaller(const ApiCaller&) = delete;
  ApiCaller& operator=(const ApiCaller&) = delete;

  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After finish(): no call failed but for at most `most_cancelled`.
  void expect_served(int most_cancelled) const {
    EXPECT_TRUE(failures_.empty())
        << failures_.size() << " calls failed, the first: " << failures_.front();
    EXPECT_LE(cancelled_, most_cancelled) << "of " << calls_;
    EXPECT_GT(calls_, 20);
  }

 private:
  void run(v1::DaemonService::Stub& stub) {
    while (!stop_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(soon());
      v1::ListResponse list;
      const grpc::Status status = stub.List(&ctx, v1::ListRequest(), &list);
      ++calls_;
      if (status.error_code() == grpc::StatusCode::CANCELLED) {
        ++cancelled_;
      } else if (!status.ok()) {
        failures_.push_back(std::to_string(status.error_code()) + " " + status.error_message());
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  std::atomic<bool> stop_{false};
  int calls_ = 0;
  int cancelled_ = 0;
  std::vector<std::string> failures_;
  std::thread thread_;  // last: started once the counts exist
};

// `command` as run in `ns` (ip netns exec).
std::vector<std::string> in_netns(const NetNs& ns, std::vector<std::string> command) {
  command.insert(command.begin(), {"ip", "netns", "exec", ns.name()});
  return command;
}

// Whether `dev` (in `ns`, or the host's namespace) carries the packet
// socket filter on its egress, as tc lists it.
bool carries_packet_socket_filter(const std::string& dev, const NetNs* ns = nullptr) {
  std::vector<std::string> command = {"tc", "filter", "show", "dev", dev, "egress"};
  if (ns != nullptr) command = in_netns(*ns, std::move(command));
  return run_command(command).output.find("sebpf_tc_packet") != std::string::npos;
}

// Whether `dev` carries the guard and the flow tracker of an interface
// attachment (guard on ingress), as tc lists them.
bool carries_interface_filters(const std::string& dev) {
  return run_command({"tc", "filter", "show", "dev", dev, "ingress"})
                 .output.find("sebpf_tc_guard") != std::string::npos &&
         run_command({"tc", "filter", "show", "dev", dev, "egress"})
                 .output.find("sebpf_tc_track") != std::string::npos;
}

TEST_F(DaemonE2eTest, AttachedCgroupObeysThePolicySetThroughTheApi) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att =
      attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}), {{"vm", "7"}});
  ASSERT_FALSE(att.id().empty());
  EXPECT_EQ(att.type(), v1::TARGET_TYPE_CGROUP);
  EXPECT_EQ(att.target(), cgroup_->path());
  EXPECT_EQ(att.metadata().at("vm"), "7");
  EXPECT_EQ(att.dns().ipv4(), "127.0.0.1");
  EXPECT_NE(att.dns().port(), 0U);
  EXPECT_EQ(att.applied_policy(), "request");

  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddCidrRequest req;
    req.set_id(att.id());
    req.mutable_rule()->set_cidr("198.51.100.3");
    req.mutable_rule()->set_action(v1::ACTION_ALLOW);
    req.mutable_rule()->set_ttl_seconds(600);
    v1::Policy policy;
    ASSERT_TRUE(stub_->AddCidr(&ctx, req, &policy).ok());
    ASSERT_EQ(policy.cidrs_size(), 2);
    EXPECT_EQ(policy.cidrs(1).cidr(), "198.51.100.3/32");
    EXPECT_TRUE(policy.cidrs(1).has_expires_at());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::SetModeRequest req;
    req.set_id(att.id());
    req.set_mode(v1::MODE_BLOCK_ALL);
    v1::Policy policy;
    ASSERT_TRUE(stub_->SetMode(&ctx, req, &policy).ok());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ReplacePolicyRequest req;
    req.set_id(att.id());
    *req.mutable_policy() = make_policy(v1::MODE_DENYLIST, {}, {"198.51.100.2/32"});
    auto* domain = req.mutable_policy()->add_domains();
    domain->set_domain("Mirror.Example.ORG.");
    domain->set_action(v1::ACTION_ALLOW);
    v1::Policy policy;
    ASSERT_TRUE(stub_->ReplacePolicy(&ctx, req, &policy).ok());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  const v1::Policy policy = get_policy(att.id());
  EXPECT_EQ(policy.mode(), v1::MODE_DENYLIST);
  ASSERT_EQ(policy.domains_size(), 1);
  EXPECT_EQ(policy.domains(0).domain(), "mirror.example.org");

  ASSERT_TRUE(detach(att.id()).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
}

// A process of the workload in `cgroup` (and in `netns`, if given) that
// has dropped `dropped` (capabilities) from its bounding set and stays
// until killed; returns once it is in place.
std::unique_ptr<Child> workload_process(TestCgroup& cgroup, std::vector<int> dropped,
                                        const NetNs* netns = nullptr) {
  int ready[2];
  if (pipe(ready) != 0) return nullptr;
  auto child = std::make_unique<Child>([&] {
    close(ready[0]);
    if (!cgroup.add_self()) return 82;
    if (netns != nullptr && !netns->enter()) return 85;
    for (const int cap : dropped) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return 83;
    }
    if (write(ready[1], "x", 1) != 1) return 84;
    pause();
    return 0;
  });
  close(ready[1]);
  char byte;
  const bool ok = read(ready[0], &byte, 1) == 1;
  close(ready[0]);
  return ok ? std::move(child) : nullptr;
}

// A process that may reconfigure its network namespace (CAP_NET_ADMIN) can
// forward packets out past the cgroup programs, and packet sockets
// (CAP_NET_RAW) in a namespace the daemon did not guard at attach time
// send frames nothing sees: the Attachment must say so rather than look
// like full enforcement, naming the processes.
TEST_F(DaemonE2eTest, AnAttachmentNamesProcessesThatMayGetPacketsPastIt) {
  start_daemon();
  const auto confined = workload_process(*cgroup_, {CAP_NET_RAW, CAP_NET_ADMIN});
  ASSERT_NE(confined, nullptr);
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  EXPECT_EQ(att.warnings_size(), 0) << "no process here may get packets past the programs";

  // Packet sockets where the workload was at attach time are held.
  const auto raw_guarded = workload_process(*cgroup_, {CAP_NET_ADMIN});
  const auto raw = workload_process(*cgroup_, {CAP_NET_ADMIN}, &topo_->ns());
  const auto admin = workload_process(*cgroup_, {CAP_NET_RAW});
  ASSERT_NE(raw_guarded, nullptr);
  ASSERT_NE(raw, nullptr);
  ASSERT_NE(admin, nullptr);
  grpc::ClientContext ctx;
  ctx.set_deadline(soon());
  v1::GetRequest req;
  req.set_id(att.id());
  v1::Attachment now;
  ASSERT_TRUE(stub_->Get(&ctx, req, &now).ok());
  ASSERT_EQ(now.warnings_size(), 2);
  // "process <pid>", singular: each names only its own; the confined one
  // is in neither.
  EXPECT_NE(now.warnings(0).find("process " + std::to_string(raw->pid()) + " may open packet"),
            std::string::npos)
      << now.warnings(0);
  EXPECT_NE(now.warnings(1).find("process " + std::to_string(admin->pid()) +
                                 " may reconfigure their network namespace"),
            std::string::npos)
      << now.warnings(1);
}

// The daemon puts the packet socket filter in the network namespace the
// workload sends from (here a namespace of its own, as a container's):
// the frame a packet socket writes whole does not leave it.
TEST_F(DaemonE2eTest, APacketSocketsFramesDoNotLeaveTheWorkloadsNamespace) {
  start_daemon();
  const auto resident = workload_process(*cgroup_, {CAP_NET_ADMIN}, &topo_->ns());
  ASSERT_NE(resident, nullptr);
  const auto frame_gets_out = [&] {
    UniqueFd rx = frame_listener(topo_->host_if());
    EXPECT_TRUE(rx);
    const std::string out = topo_->peer_if();
    in_cgroup([&] { return topo_->ns().enter() ? send_frame(out) : 81; });
    return rx && frame_arrives(rx.get(), milliseconds(1000));
  };
  ASSERT_TRUE(frame_gets_out()) << "unattached, the frame must pass (else this shows nothing)";

  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.1/32"}));
  EXPECT_EQ(att.warnings_size(), 0) << "the resident process's packet sockets are held";
  EXPECT_FALSE(frame_gets_out()) << "a frame of the attached workload left its namespace";

  // Detached, the workload's namespace is as it was: no filter of ours,
  // no qdisc made for it.
  const auto in_workload_ns = [&](std::vector<std::string> command) {
    return run_command(in_netns(topo_->ns(), std::move(command))).output;
  };
  ASSERT_TRUE(carries_packet_socket_filter(topo_->peer_if(), &topo_->ns()));
  ASSERT_TRUE(detach(att.id()).ok());
  for (const std::string& dev : {topo_->peer_if(), std::string("lo")}) {
    EXPECT_EQ(in_workload_ns({"tc", "qdisc", "show", "dev", dev}).find("clsact"), std::string::npos)
        << dev;
  }
  EXPECT_NE(daemon_->log().find("packet_socket_filter_removed"), std::string::npos);
}

// Whether a frame that `send` writes (once a listener is up) arrives on
// `peer_if` in the test namespace.
bool frame_reaches_peer(const NetNs& ns, const std::string& peer_if,
                        const std::function<void()>& send) {
  int ready[2];
  if (pipe(ready) != 0) return false;
  Child listener([&] {
    close(ready[0]);
    if (!ns.enter()) return 81;
    UniqueFd rx = frame_listener(peer_if);
    if (!rx) return 82;
    if (write(ready[1], "x", 1) != 1) return 83;
    return frame_arrives(rx.get(), milliseconds(1000)) ? 0 : 1;
  });
  close(ready[1]);
  char byte;
  const bool up = read(ready[0], &byte, 1) == 1;
  close(ready[0]);
  if (up) send();
  return up && listener.wait() == 0;
}

// A workload in the host's own namespace: the daemon guards every
// interface there, those made after the attach too (RTM_NEWLINK).
TEST_F(DaemonE2eTest, PacketSocketsInTheHostNamespaceAreHeldOnEveryInterfaceNewOnesToo) {
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  const auto workload_sends_on = [&](const std::string& dev) {
    return [this, dev] { in_cgroup([&] { return send_frame(dev); }); };
  };
  const auto outsider_sends_on = [](const std::string& dev) {
    return [dev] { run_in_child([&] { return send_frame(dev); }); };
  };
  EXPECT_FALSE(
      frame_reaches_peer(topo_->ns(), topo_->peer_if(), workload_sends_on(topo_->host_if())))
      << "a frame of the workload left on an interface that was there at attach";
  EXPECT_TRUE(
      frame_reaches_peer(topo_->ns(), topo_->peer_if(), outsider_sends_on(topo_->host_if())))
      << "a process outside the attachment was stopped";

  const VethPair added("sebpfn" + topo_->tag(), "sebpfo" + topo_->tag(), topo_->ns());
  // The daemon guards it when the kernel's RTM_NEWLINK reaches it; until
  // then a frame may pass (see docs/architecture.md, Limits by design).
  ASSERT_TRUE(within(milliseconds(2000), [&] {
    return carries_packet_socket_filter(added.host());
  })) << "no packet socket filter on an interface made after the attach";
  EXPECT_FALSE(frame_reaches_peer(topo_->ns(), added.peer(), workload_sends_on(added.host())));
  EXPECT_TRUE(frame_reaches_peer(topo_->ns(), added.peer(), outsider_sends_on(added.host())));
}

// The packet socket filter on an interface of the host's namespace goes
// with its clsact qdisc, should another program delete it: put back when
// the event reaches the daemon, and named in an error line.
TEST_F(DaemonE2eTest, APacketSocketFilterDeletedByAnotherProgramIsPutBack) {
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  {
    StoppedProcess stopped(daemon_->pid());
    must_run({"tc", "qdisc", "del", "dev", topo_->host_if(), "clsact"});
    EXPECT_TRUE(frame_reaches_peer(topo_->ns(), topo_->peer_if(), [this] {
      in_cgroup([&] { return send_frame(topo_->host_if()); });
    })) << "the qdisc's removal left the frames held: this test no longer shows what it closes";
  }
  EXPECT_TRUE(within(milliseconds(2000), [&] {
    return carries_packet_socket_filter(topo_->host_if());
  })) << daemon_->log();
  EXPECT_FALSE(frame_reaches_peer(topo_->ns(), topo_->peer_if(), [this] {
    in_cgroup([&] { return send_frame(topo_->host_if()); });
  }));
  EXPECT_NE(daemon_->log().find("\"event\":\"packet_socket_filter_restored\""), std::string::npos)
      << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"found\":\"missing\""), std::string::npos);
}

// `tc filter replace` at the packet socket filter's handle and priority:
// the filter stays and runs another's program, which lets every frame
// through. Then `tc filter add` of that program at our priority: it runs
// before ours. Each event says a filter changed; ours is back, and first.
TEST_F(DaemonE2eTest, APacketSocketFilterReplacedOrPassedByAnotherProgramIsPutBackFirst) {
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  const auto frame_gets_out = [this] {
    return frame_reaches_peer(topo_->ns(), topo_->peer_if(),
                              [this] { in_cgroup([&] { return send_frame(topo_->host_if()); }); });
  };
  const auto ours_runs_first = [&] {
    const std::string filters =
        run_command({"tc", "filter", "show", "dev", topo_->host_if(), "egress"}).output;
    const size_t ours = filters.find("sebpf_tc_packet");
    return ours != std::string::npos && ours < filters.find("other_pass_all");
  };
  const uint32_t our_handle = datapath::Config{}.tc_handle + 1;
  constexpr uint32_t kTheirHandle = 7;
  for (const uint32_t handle : {our_handle, kTheirHandle}) {
    SCOPED_TRACE(handle == our_handle ? "in our filter's place" : "ahead of our filter");
    {
      StoppedProcess stopped(daemon_->pid());
      put_pass_all_filter(topo_->host_if(), BPF_TC_EGRESS, handle);
      ASSERT_FALSE(ours_runs_first());
      EXPECT_TRUE(frame_gets_out())
          << "the filter still held the frames: this test no longer shows what it closes";
    }
    EXPECT_TRUE(within(milliseconds(2000), ours_runs_first)) << daemon_->log();
    EXPECT_FALSE(frame_gets_out());
  }
  EXPECT_NE(daemon_->log().find("\"event\":\"packet_socket_filter_restored\""), std::string::npos)
      << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"found\":\"replaced\""), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"found\":\"behind_another\""), std::string::npos);
}

// The host's interfaces carry the packet socket filter only while a cgroup
// attachment in the host's namespace needs it: detached, removed while the
// daemon was down, or never attached, the interfaces are as they were
// (an operator who detached everything finds no filter of ours left).
TEST_F(DaemonE2eTest, TheHostsInterfacesCarryThePacketSocketFilterOnlyWhileACgroupNeedsIt) {
  start_daemon();
  const v1::Policy policy = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"});
  auto second = std::make_unique<TestCgroup>("sebpf-second-" + topo_->tag());
  const v1::Attachment first = attach_cgroup(policy);
  v1::AttachRequest req;
  req.set_cgroup_path(second->path());
  v1::Attachment other;
  ASSERT_TRUE(attach(req, &other).ok());
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  ASSERT_TRUE(carries_packet_socket_filter("lo"));

  ASSERT_TRUE(detach(first.id()).ok());
  EXPECT_TRUE(carries_packet_socket_filter(topo_->host_if()))
      << "taken off while another cgroup needs it";
  ASSERT_TRUE(detach(other.id()).ok());
  EXPECT_FALSE(carries_packet_socket_filter(topo_->host_if()))
      << "left on after the last cgroup was detached";
  EXPECT_FALSE(carries_packet_socket_filter("lo"));

  // Attached again, the filter is back and holds the workload's frames.
  const v1::Attachment again = attach_cgroup(policy);
  EXPECT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  EXPECT_FALSE(frame_reaches_peer(topo_->ns(), topo_->peer_if(), [&] {
    in_cgroup([&] { return send_frame(topo_->host_if()); });
  })) << "a frame of the workload left after the filter was put back";

  // A cgroup removed while no daemon ran: the next start drops it, and
  // with it the filter the earlier process put there. An interface
  // attachment keeps its own filters on the same hook (and the start
  // writes nothing but JSON lines, as TearDown checks: no kernel complaint
  // about a filter it did not find there).
  ASSERT_TRUE(attach(req, &other).ok());
  ASSERT_TRUE(detach(again.id()).ok());
  v1::AttachRequest vm;
  vm.set_interface_name(topo_->host_if());
  v1::Attachment guest;
  ASSERT_TRUE(attach(vm, &guest).ok());
  EXPECT_EQ(daemon_->terminate(), 0);
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()))
      << "a clean stop leaves enforcement in place";
  second.reset();
  start_daemon();
  EXPECT_FALSE(carries_packet_socket_filter(topo_->host_if()))
      << "left on by a start with no cgroup attached";
  EXPECT_FALSE(carries_packet_socket_filter("lo"));
  EXPECT_NE(daemon_->log().find("packet_socket_filter_removed"), std::string::npos);
  EXPECT_NE(run_command({"tc", "filter", "show", "dev", topo_->host_if(), "egress"})
                .output.find("sebpf_tc_track"),
            std::string::npos)
      << "the interface attachment's own filter was taken too";
  // The same again, as on a host of VMs alone: the interface carries
  // filters of ours, none of them the packet socket filter.
  EXPECT_EQ(daemon_->terminate(), 0);
  start_daemon();
}

// An attach whose record cannot be written is undone whole: the kernel
// attachment, the DNS endpoint (its port is free for the next attach) and
// the host's packet socket filter.
TEST_F(DaemonE2eTest, AnAttachWhoseStateCannotBeSavedIsUndoneWhole) {
  topo_->start_peer_server();
  start_daemon();
  // The state file is written to a temporary file first: a directory
  // there makes the write fail.
  const std::string blocker = state_file() + ".tmp";
  ASSERT_TRUE(std::filesystem::create_directory(blocker));
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"});
  v1::Attachment att;
  const grpc::Status refused = attach(req, &att);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error_message().find("(undone)"), std::string::npos) << refused.error_message();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0)
      << "the workload is held by an attachment that failed";
  EXPECT_FALSE(carries_packet_socket_filter(topo_->host_if()));
  // The first port a daemon hands out (dns.port_first's default).
  EXPECT_EQ(run_command({"ss", "-Hlnu", "sport = :20000"}).output, "")
      << "the failed attach's DNS endpoint is still open";

  std::filesystem::remove(blocker);
  ASSERT_TRUE(attach(req, &att).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

TEST_F(DaemonE2eTest, AttachByPidFindsTheProcessCgroup) {
  start_daemon();
  Child sleeper([&] {
    if (!cgroup_->add_self()) return 82;
    pause();
    return 0;
  });
  // Wait until the child has moved itself.
  std::string path;
  for (int i = 0; i < 200; ++i) {
    std::ifstream in("/proc/" + std::to_string(sleeper.pid()) + "/cgroup");
    std::getline(in, path);
    if (path.find(cgroup_->path().substr(cgroup2_root().size())) != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  v1::AttachRequest req;
  req.set_pid(static_cast<uint32_t>(sleeper.pid()));
  v1::Attachment att;
  const grpc::Status status = attach(req, &att);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(att.target(), cgroup_->path());
  EXPECT_EQ(att.applied_policy(), "builtin-default");
  // The built-in default fails closed.
  EXPECT_EQ(get_policy(att.id()).mode(), v1::MODE_ALLOWLIST);
}

// Modes disabled, so that an attach a test expects refused would, were it
// let through (the daemon's own cgroup, the host's uplink), confine nothing.
void enforce_nothing(v1::AttachRequest& req) {
  req.mutable_policy()->set_mode(v1::MODE_DISABLED);
  req.mutable_policy()->set_dns_mode(v1::MODE_DISABLED);
}

v1::AttachRequest interface_enforcing_nothing(const std::string& name) {
  v1::AttachRequest req;
  req.set_interface_name(name);
  enforce_nothing(req);
  return req;
}

// A request to attach `name` allowing the host's side of the topology
// (198.51.100.1) alone.
v1::AttachRequest interface_allowing_the_host(const std::string& name) {
  v1::AttachRequest req;
  req.set_interface_name(name);
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.1/32"});
  return req;
}

// What the guard of interface_allowing_the_host keeps the guest from: 0 if
// it reached a host its policy denies, ETIMEDOUT while the guard holds.
int guest_reaches_denied_host(const Topology& topo) {
  return topo.run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); });
}

// The daemon's own cgroup, and every cgroup above it, would put the daemon
// under a workload's policy: the DNS queries it forwards would be steered
// back into its own endpoints. They are refused, by path and by pid; a
// cgroup beside it is not.
TEST_F(DaemonE2eTest, ACgroupHoldingTheDaemonItselfIsRefused) {
  start_daemon();
  const std::string above_name = "sebpf-e2e-above-daemon-" + std::to_string(getpid());
  TestCgroup above(above_name);
  TestCgroup beside(above_name + "/beside");
  TestCgroup own(above_name + "/daemon");
  ScopedCgroupMove moved(own.path(), daemon_->pid());
  ASSERT_TRUE(moved.ok());
  for (const std::string& path : {own.path(), above.path()}) {
    v1::AttachRequest req;
    req.set_cgroup_path(path);
    enforce_nothing(req);
    v1::Attachment att;
    const grpc::Status status = attach(req, &att);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
    EXPECT_EQ(status.error_message().rfind("cgroup_path: " + path + " holds superebpfd itself", 0),
              0U)
        << status.error_message();
  }
  v1::AttachRequest by_pid;
  by_pid.set_pid(static_cast<uint32_t>(daemon_->pid()));
  enforce_nothing(by_pid);
  v1::Attachment att;
  const grpc::Status status = attach(by_pid, &att);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().rfind("pid: " + own.path() + " holds superebpfd itself", 0), 0U)
      << status.error_message();
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 0) << "a refused attach changed nothing";

  v1::AttachRequest next_door;
  next_door.set_cgroup_path(beside.path());
  enforce_nothing(next_door);
  const grpc::Status attached = attach(next_door, &att);
  EXPECT_TRUE(attached.ok()) << attached.error_message();
}

TEST_F(DaemonE2eTest, AttachedInterfaceFiltersTheGuest) {
  topo_->start_host_server();
  start_daemon();
  v1::Attachment att;
  const grpc::Status status = attach(interface_allowing_the_host(topo_->host_if()), &att);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(att.type(), v1::TARGET_TYPE_INTERFACE);
  // A VM's DNS endpoint is on the host side of its interface.
  EXPECT_EQ(att.dns().ipv4(), "198.51.100.1");
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
}

// Another program deleting an attached interface's clsact qdisc (a
// cleanup script, a network manager resetting the interface) takes the
// guard with it, and the guest's traffic passes unfiltered. The daemon puts
// the filters back when the kernel's event reaches it, and names the
// removal in an error line. Here the daemon is stopped meanwhile, to show
// the hole it closes.
TEST_F(DaemonE2eTest, AnAttachedInterfacesFiltersDeletedByAnotherProgramArePutBack) {
  topo_->start_host_server();
  start_daemon();
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_allowing_the_host(topo_->host_if()), &att).ok());
  ASSERT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
  {
    StoppedProcess stopped(daemon_->pid());
    must_run({"tc", "qdisc", "del", "dev", topo_->host_if(), "clsact"});
    EXPECT_EQ(guest_reaches_denied_host(*topo_), 0)
        << "the qdisc's removal left the guest filtered: "
           "this test no longer shows what it closes";
  }
  EXPECT_TRUE(within(milliseconds(2000), [&] {
    return carries_interface_filters(topo_->host_if());
  })) << daemon_->log();
  EXPECT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_NE(daemon_->log().find("\"event\":\"attachment_filters_restored\""), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"hooks\":\"ingress,egress\""), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"found\":\"missing,missing\""), std::string::npos);

  // One filter deleted alone (the guard's hook, every filter on it).
  must_run({"tc", "filter", "del", "dev", topo_->host_if(), "ingress"});
  EXPECT_TRUE(within(milliseconds(2000), [&] {
    return carries_interface_filters(topo_->host_if());
  })) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"hooks\":\"ingress\""), std::string::npos) << daemon_->log();
  EXPECT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
}

// Two ways another program silences the guard without deleting a filter:
// `tc filter replace` at its handle and priority (the filter stays, and
// runs a program that lets the guest reach anything), and `tc filter add`
// at its priority (cls_bpf runs the newest filter first, and one that ends
// the hook with TC_ACT_OK keeps the guard from running). Each event says a
// filter changed; the guard is back, and first. The other filter stays.
TEST_F(DaemonE2eTest, AnAttachedInterfacesGuardReplacedOrPassedByAnotherProgramIsPutBackFirst) {
  topo_->start_host_server();
  start_daemon();
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_allowing_the_host(topo_->host_if()), &att).ok());
  ASSERT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
  const auto ingress_filters = [&] {
    return run_command({"tc", "filter", "show", "dev", topo_->host_if(), "ingress"}).output;
  };
  const auto guard_runs_first = [&] {
    const std::string filters = ingress_filters();
    const size_t guard = filters.find("sebpf_tc_guard");
    return guard != std::string::npos && guard < filters.find("other_pass_all");
  };
  const uint32_t our_handle = datapath::Config{}.tc_handle;
  constexpr uint32_t kTheirHandle = 7;
  for (const uint32_t handle : {our_handle, kTheirHandle}) {
    SCOPED_TRACE(handle == our_handle ? "in the guard's place" : "ahead of the guard");
    {
      StoppedProcess stopped(daemon_->pid());
      put_pass_all_filter(topo_->host_if(), BPF_TC_INGRESS, handle);
      ASSERT_FALSE(guard_runs_first());
      EXPECT_EQ(guest_reaches_denied_host(*topo_), 0)
          << "the guard still filtered the guest: this test no longer shows what it closes";
    }
    EXPECT_TRUE(within(milliseconds(2000), guard_runs_first)) << daemon_->log();
    EXPECT_EQ(guest_reaches_denied_host(*topo_), ETIMEDOUT);
    EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  }
  EXPECT_NE(ingress_filters().find("other_pass_all"), std::string::npos)
      << "another program's filter was taken away";
  EXPECT_NE(daemon_->log().find("\"event\":\"attachment_filters_restored\""), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"hooks\":\"ingress\""), std::string::npos) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"found\":\"replaced\""), std::string::npos) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"found\":\"behind_another\""), std::string::npos);
}

// A default route on `dev` that the host does not use (its own has a lower
// metric); removed at the end of the scope, and with the interface should
// the test die first.
class SpareDefaultRoute {
 public:
  explicit SpareDefaultRoute(const std::string& dev) : dev_(dev) { must_run(command("add")); }
  ~SpareDefaultRoute() { run_command(command("del")); }
  SpareDefaultRoute(const SpareDefaultRoute&) = delete;
  SpareDefaultRoute& operator=(const SpareDefaultRoute&) = delete;

 private:
  std::vector<std::string> command(const char* verb) const {
    return {"ip", "route", verb, "default", "dev", dev_, "metric", "4242"};
  }
  std::string dev_;
};

// An interface holding a default route is a host's uplink, not a VM's:
// attached, the host's own traffic through it would be judged as a
// guest's. Refused; the same interface without the route is attached.
TEST_F(DaemonE2eTest, AnInterfaceHoldingADefaultRouteIsRefused) {
  start_daemon();
  const v1::AttachRequest req = interface_enforcing_nothing(topo_->host_if());
  v1::Attachment att;
  {
    SpareDefaultRoute route(topo_->host_if());
    const grpc::Status refused = attach(req, &att);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(
        refused.error_message().rfind(
            "interface_name: \"" + topo_->host_if() + "\" holds this host's default route", 0),
        0U)
        << refused.error_message();
  }
  const grpc::Status attached = attach(req, &att);
  EXPECT_TRUE(attached.ok()) << attached.error_message();
}

// Whether a daemon log has an attachment_target_unsafe line naming `id`.
bool names_unsafe_target(const std::string& log, const std::string& id) {
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("attachment_target_unsafe") != std::string::npos &&
        line.find("\"" + id + "\"") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Whether the daemon names `id` so within `timeout`.
bool names_unsafe_target_within(const DaemonProcess& daemon, const std::string& id,
                                milliseconds timeout) {
  return within(timeout, [&] { return names_unsafe_target(daemon.log(), id); });
}

// State adopted at start may hold what Attach refuses (made by an older
// build, or the daemon started inside an attached container): the daemon
// names each such attachment in an error line, and keeps enforcing.
TEST_F(DaemonE2eTest, ADaemonStartingWithUnsafeTargetsNamesThem) {
  start_daemon();
  v1::AttachRequest by_cgroup;
  by_cgroup.set_cgroup_path(cgroup_->path());
  enforce_nothing(by_cgroup);
  const v1::AttachRequest by_interface = interface_enforcing_nothing(topo_->host_if());
  v1::Attachment cgroup_att, interface_att;
  ASSERT_TRUE(attach(by_cgroup, &cgroup_att).ok());
  ASSERT_TRUE(attach(by_interface, &interface_att).ok());
  {
    SpareDefaultRoute route(topo_->host_if());
    ScopedCgroupMove inside(cgroup_->path());  // the daemon starts where the test is
    ASSERT_TRUE(inside.ok());
    start_daemon();
  }
  for (const v1::Attachment& att : {cgroup_att, interface_att}) {
    EXPECT_TRUE(names_unsafe_target(daemon_->log(), att.id())) << att.id() << " not named in:\n"
                                                               << daemon_->log();
  }
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 2) << "both still attached";
}

// An attached interface that later gets a default route has become an
// uplink: the daemon says so at once (it stays attached).
TEST_F(DaemonE2eTest, AnAttachedInterfaceThatBecomesAnUplinkIsNamed) {
  start_daemon();
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_enforcing_nothing(topo_->host_if()), &att).ok());
  EXPECT_FALSE(names_unsafe_target(daemon_->log(), att.id()));
  SpareDefaultRoute route(topo_->host_if());
  const bool named = names_unsafe_target_within(*daemon_, att.id(), milliseconds(2000));
  EXPECT_TRUE(named) << "not named within 2 s:\n" << daemon_->log();
}

// Route events the kernel dropped (the watcher's socket overflowed while
// the daemon could not read) do not hide an uplink: on the overflow the
// daemon looks at every attached interface's routes itself.
class RouteEventFlood {
 public:
  // Blackhole routes in a documentation range: events, and nothing else.
  RouteEventFlood(const std::string& dir, int routes)
      : file_(dir + "/route-flood"), routes_(routes) {
    write("add");
    must_run({"ip", "-batch", file_});
  }
  ~RouteEventFlood() {
    write("del");
    run_command({"ip", "-force", "-batch", file_});
  }
  RouteEventFlood(const RouteEventFlood&) = delete;
  RouteEventFlood& operator=(const RouteEventFlood&) = delete;

 private:
  void write(const char* verb) const {
    std::ofstream batch(file_);
    for (int i = 1; i <= routes_; ++i) {
      batch << "route " << verb << " blackhole 2001:db8:5eb::" << std::hex << i << std::dec
            << "/128\n";
    }
  }

  std::string file_;
  int routes_;
};

TEST_F(DaemonE2eTest, AnUplinkWhoseRouteEventWasLostIsNamedAllTheSame) {
  start_daemon();
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_enforcing_nothing(topo_->host_if()), &att).ok());
  std::optional<SpareDefaultRoute> route;
  std::optional<RouteEventFlood> flood;
  {
    StoppedProcess stopped(daemon_->pid());
    // Far more than the watcher's socket holds (~300 route messages at the
    // default buffer size); the default route's event comes after them.
    flood.emplace(dir(), 5000);
    route.emplace(topo_->host_if());
  }
  const bool named = names_unsafe_target_within(*daemon_, att.id(), milliseconds(3000));
  EXPECT_NE(daemon_->log().find("link_events_lost"), std::string::npos)
      << "no event was lost: this test no longer tests the overflow\n"
      << daemon_->log();
  EXPECT_TRUE(named) << "not named within 3 s:\n" << daemon_->log();
}

// TC events the kernel dropped (the watcher's socket overflowed while the
// daemon could not read) do not hide a deleted filter: on the overflow the
// daemon looks at every attached interface itself.
TEST_F(DaemonE2eTest, FiltersDeletedWhileTheirEventsWereLostArePutBackAllTheSame) {
  start_daemon();
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_allowing_the_host(topo_->host_if()), &att).ok());
  std::optional<RouteEventFlood> flood;
  {
    StoppedProcess stopped(daemon_->pid());
    flood.emplace(dir(), 5000);
    must_run({"tc", "qdisc", "del", "dev", topo_->host_if(), "clsact"});
  }
  EXPECT_TRUE(within(milliseconds(3000), [&] {
    return carries_interface_filters(topo_->host_if());
  })) << daemon_->log();
  EXPECT_NE(daemon_->log().find("link_events_lost"), std::string::npos)
      << "no event was lost: this test no longer tests the overflow\n"
      << daemon_->log();
}

// While the host's namespace is guarded, lost events hide both an
// interface made meanwhile and a packet socket filter another program
// took. The look that follows guards both; only the taken one is an
// error line, since the new one never had a filter to lose.
TEST_F(DaemonE2eTest, AfterLostEventsOnlyAPacketSocketFilterTakenByAnotherProgramIsReported) {
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  std::optional<RouteEventFlood> flood;
  std::optional<VethPair> added;
  {
    StoppedProcess stopped(daemon_->pid());
    flood.emplace(dir(), 5000);
    // Their events come after the flood's, which fill the socket.
    added.emplace("sebpfn" + topo_->tag(), "sebpfo" + topo_->tag(), topo_->ns());
    must_run({"tc", "qdisc", "del", "dev", topo_->host_if(), "clsact"});
  }
  EXPECT_TRUE(within(milliseconds(3000), [&] {
    return carries_packet_socket_filter(topo_->host_if()) &&
           carries_packet_socket_filter(added->host());
  })) << daemon_->log();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("link_events_lost"), std::string::npos)
      << "no event was lost: this test no longer tests the overflow\n"
      << log;
  std::vector<std::string> reported;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("\"event\":\"packet_socket_filter_restored\"") != std::string::npos)
      reported.push_back(line);
  }
  ASSERT_EQ(reported.size(), 1u) << log;
  EXPECT_NE(reported[0].find("\"interface\":\"" + topo_->host_if() + "\""), std::string::npos)
      << reported[0];
  EXPECT_NE(reported[0].find("\"found\":\"missing\""), std::string::npos) << reported[0];
}

// No kernel event says that a process moved to another cgroup: a daemon
// moved into a cgroup it has attached is named at its next sweep.
TEST_F(DaemonE2eTest, ADaemonMovedIntoAnAttachedCgroupIsNamedAtTheNextSweep) {
  const std::string config = config_file(kSweepEverySecond);
  start_daemon({"--config", config});
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  enforce_nothing(req);
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  std::this_thread::sleep_for(milliseconds(1500));  // a sweep or more, the daemon outside
  EXPECT_FALSE(names_unsafe_target(daemon_->log(), att.id())) << daemon_->log();
  ScopedCgroupMove moved(cgroup_->path(), daemon_->pid());
  ASSERT_TRUE(moved.ok());
  const bool named = names_unsafe_target_within(*daemon_, att.id(), milliseconds(3000));
  EXPECT_TRUE(named) << "not named within 3 s:\n" << daemon_->log();
}

TEST_F(DaemonE2eTest, RemovedCgroupIsDetachedWithinASecond) {
  start_daemon();
  TestCgroup doomed("sebpf-doomed-" + topo_->tag());
  v1::AttachRequest req;
  req.set_cgroup_path(doomed.path());
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  ASSERT_EQ(rmdir(doomed.path().c_str()), 0);
  const auto took = wait_detached(att.id(), std::chrono::seconds(1));
  ASSERT_TRUE(took.has_value()) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"reason\":\"cgroup removed\""), std::string::npos);
}

// An orchestrator that removes a container, then detaches its attachment,
// finds the daemon did it first: its call fails NOT_FOUND, and says so and
// why, as do calls for an attachment whose target went while the daemon
// was down, and the next daemon still does (the state file keeps why). An
// id the daemon never ended says only that there is none.
TEST_F(DaemonE2eTest, CallsForAnAttachmentTheDaemonEndedSayWhy) {
  start_daemon();
  const std::string removed_id = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {})).id();
  const std::string removed_path = cgroup_->path();
  ASSERT_EQ(rmdir(cgroup_->path().c_str()), 0);
  ASSERT_TRUE(wait_detached(removed_id, std::chrono::seconds(1)).has_value()) << daemon_->log();
  const grpc::Status removed = detach(removed_id);
  EXPECT_EQ(removed.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(removed.error_message(), "no attachment " + removed_id + ": the daemon detached it (" +
                                         cgroup_->path() + "): cgroup removed");

  cgroup_.reset();  // first: its end removes the directory, whoever made it
  cgroup_ = std::make_unique<TestCgroup>("sebpf-e2e-" + topo_->tag());
  const std::string gone_id = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {})).id();
  daemon_->kill9();
  ASSERT_EQ(rmdir(cgroup_->path().c_str()), 0);
  start_daemon();
  const grpc::Status gone = detach(gone_id);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(gone.error_message().find(": the daemon detached it (" + cgroup_->path() +
                                      "): target removed while the daemon was not running"),
            std::string::npos)
      << gone.error_message();
  EXPECT_EQ(detach(removed_id).error_message(), "no attachment " + removed_id +
                                                    ": the daemon detached it (" + removed_path +
                                                    "): cgroup removed")
      << "what the last daemon ended, this one tells too";

  const grpc::Status unknown = detach("att-999999");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.error_message(), "no attachment att-999999");
}

TEST_F(DaemonE2eTest, DeletedInterfaceIsDetachedWithinASecond) {
  start_daemon();
  NetNs ns("sebpf-gone-" + topo_->tag());
  auto veth = std::make_unique<VethPair>("sg" + topo_->tag(), "sgp" + topo_->tag(), ns);
  must_run({"ip", "addr", "add", "203.0.113.9/32", "dev", veth->host()});
  v1::AttachRequest req;
  req.set_interface_name(veth->host());
  v1::Attachment att;
  const grpc::Status status = attach(req, &att);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(att.dns().ipv4(), "203.0.113.9");
  must_run({"ip", "link", "del", veth->host()});
  const auto took = wait_detached(att.id(), std::chrono::seconds(1));
  ASSERT_TRUE(took.has_value()) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"reason\":\"interface deleted\""), std::string::npos);
  // Its addresses went first: no endpoint is moved off them, and nothing
  // warns of one left without an address, on every VM's shutdown.
  for (const char* event : {"dns_endpoint_without_address", "dns_endpoint_moved"}) {
    EXPECT_EQ(daemon_->log().find(event), std::string::npos) << daemon_->log();
  }
}

// An attached interface moved to another network namespace is out of the
// daemon's reach, and the kernel takes TC filters off a device it moves:
// the attachment is detached, and the log says the interface moved (not
// that it was deleted) and warns that nothing enforces it any more, which
// is true: its guest reaches a neighbour there.
TEST_F(DaemonE2eTest, AnInterfaceMovedToAnotherNamespaceIsDetachedWithAWarning) {
  start_daemon();
  NetNs guest("sebpf-mvg-" + topo_->tag());
  NetNs elsewhere("sebpf-mve-" + topo_->tag());
  const VethPair veth("sm" + topo_->tag(), "smp" + topo_->tag(), guest);
  v1::AttachRequest req = interface_enforcing_nothing(veth.host());
  req.mutable_policy()->set_mode(v1::MODE_BLOCK_ALL);
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  must_run({"ip", "link", "set", veth.host(), "netns", elsewhere.name()});
  const auto took = wait_detached(att.id(), std::chrono::seconds(1));
  ASSERT_TRUE(took.has_value()) << daemon_->log();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("\"reason\":\"interface moved to another network namespace\""),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("\"reason\":\"interface deleted\""), std::string::npos) << log;
  EXPECT_NE(log.find("moved_interface_not_enforced"), std::string::npos) << log;

  must_run(in_netns(elsewhere, {"ip", "addr", "add", "198.51.100.1/24", "dev", veth.host()}));
  must_run(in_netns(elsewhere, {"ip", "link", "set", veth.host(), "up"}));
  must_run(in_netns(guest, {"ip", "addr", "add", "198.51.100.2/24", "dev", veth.peer()}));
  must_run(in_netns(guest, {"ip", "link", "set", veth.peer(), "up"}));
  const CommandResult ping =
      run_command(in_netns(guest, {"ping", "-n", "-c", "1", "-W", "2", "198.51.100.1"}));
  EXPECT_EQ(ping.exit_code, 0) << "blocked as before the move: the warning would be wrong\n"
                               << ping.output;
}

// An interface keeps its ifindex, and our filters, across a rename (an
// orchestrator naming a tap after its VM once it is up): the attachment
// follows it under its new name, whether the daemon runs or not, so Attach
// by the new name finds it and the old name is free for a new interface.
TEST_F(DaemonE2eTest, ARenamedInterfaceIsKnownByItsNewName) {
  start_daemon();
  NetNs ns("sebpf-ren-" + topo_->tag());
  VethPair veth("sr" + topo_->tag(), "srp" + topo_->tag(), ns);
  v1::Attachment att;
  ASSERT_TRUE(attach(interface_enforcing_nothing(veth.host()), &att).ok());
  // The target the attachment is listed with.
  auto listed_target = [&] {
    v1::ListResponse list;
    if (!call_list(&list).ok()) return std::string();
    for (const v1::Attachment& a : list.attachments()) {
      if (a.id() == att.id()) return a.target();
    }
    return std::string();
  };

  const std::string renamed = "sn" + topo_->tag();
  rename_link(veth.host(), renamed);
  within(milliseconds(1000), [&] { return listed_target() == renamed; });
  EXPECT_EQ(listed_target(), renamed) << daemon_->log();

  v1::Attachment again;
  const grpc::Status twice = attach(interface_enforcing_nothing(renamed), &again);
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(twice.error_message().find(att.id()), std::string::npos) << twice.error_message();

  VethPair successor(veth.host(), "srq" + topo_->tag(), ns);
  v1::Attachment second;
  const grpc::Status free_name = attach(interface_enforcing_nothing(successor.host()), &second);
  EXPECT_TRUE(free_name.ok()) << "the old name is another interface's now: "
                              << free_name.error_message();

  daemon_->kill9();
  const std::string renamed_while_down = "st" + topo_->tag();
  rename_link(renamed, renamed_while_down);
  start_daemon();
  EXPECT_EQ(listed_target(), renamed_while_down) << daemon_->log();
  EXPECT_NE(daemon_->log().find("attachment_target_renamed"), std::string::npos);
  // Deleting the namespace takes the renamed pair's host side with it.
}

// A workload keeps probing an allowed and a denied address while the
// daemon is SIGKILLed and started again: no probe ever sees the wrong
// answer, and the new daemon has the same ids, metadata and policy.
// How many pins (files) lie under `dir`, at any depth.
size_t files_under(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    n += it->is_regular_file(ec) ? 1 : 0;
  }
  return n;
}

// A cgroup's links live only in their pins: another program removing
// them (an `rm` in /sys/fs/bpf) detaches the programs at once, and the
// workload goes unfiltered. The daemon attaches and pins them again when
// inotify tells it, and names the removal in an error line. The daemon
// is stopped meanwhile here, to show the hole it closes.
TEST_F(DaemonE2eTest, ACgroupsRemovedLinkPinsArePutBackAndItsProgramsRunAgain) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  const auto denied = [&] { return in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }); };
  ASSERT_EQ(denied(), EPERM);
  const std::string links = cgroup_links_dir();
  ASSERT_FALSE(links.empty());
  const size_t pins = files_under(links);
  ASSERT_GT(pins, 0U);
  {
    StoppedProcess stopped(daemon_->pid());
    std::filesystem::remove_all(links);
    // The kernel lets go of an unpinned link after an RCU grace period.
    EXPECT_TRUE(within(milliseconds(2000), [&] { return denied() == 0; }))
        << "the pins' removal left the cgroup filtered: this test no longer shows what it closes";
  }
  EXPECT_TRUE(within(milliseconds(2000), [&] { return files_under(links) == pins; }))
      << daemon_->log();
  EXPECT_EQ(denied(), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_NE(daemon_->log().find("\"event\":\"attachment_links_restored\""), std::string::npos)
      << daemon_->log();

  // One pin alone: its program alone goes, and comes back.
  std::filesystem::remove(links + "/sebpf_connect4");
  EXPECT_TRUE(within(milliseconds(2000), [&] { return files_under(links) == pins; }))
      << daemon_->log();
  // The line follows the pin: waited for, not read at once.
  EXPECT_TRUE(daemon_->wait_for_log("\"programs\":\"sebpf_connect4\"", 1, milliseconds(2000)))
      << daemon_->log();
  EXPECT_EQ(denied(), EPERM);
  EXPECT_NE(get_policy(att.id()).cidrs_size(), 0);
}

// Another program that changes a cgroup's links under their pins, which
// no event reports: `tamper` does it to the link pinned at a path. With
// the daemon stopped meanwhile, the workload goes unfiltered (the hole
// shown), and the next sweep closes it; then the same while the daemon is
// down, which its start closes (`before_answering`: before it answers
// calls, else at the watcher's first look). The attachment is kept
// throughout, policy and all.
class CgroupLinkTamperTest : public DaemonE2eTest {
 protected:
  void expect_put_back(const std::function<void(const std::string&)>& tamper,
                       bool before_answering) {
    topo_->start_peer_server();
    const std::string config = config_file(kSweepEverySecond);
    start_daemon({"--config", config});
    const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
    const auto denied = [&] {
      return in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); });
    };
    ASSERT_EQ(denied(), EPERM);
    const std::string links = cgroup_links_dir();
    ASSERT_FALSE(links.empty());
    const auto tamper_with_all = [&] {
      for (const auto& e : std::filesystem::directory_iterator(links)) tamper(e.path());
    };
    {
      StoppedProcess stopped(daemon_->pid());
      tamper_with_all();
      EXPECT_EQ(denied(), 0) << "the links' change left the cgroup filtered: this test no longer "
                                "shows what it closes";
    }
    EXPECT_TRUE(within(milliseconds(3000), [&] { return denied() == EPERM; })) << daemon_->log();
    EXPECT_TRUE(
        daemon_->wait_for_log("\"event\":\"attachment_links_restored\"", 1, milliseconds(100)))
        << daemon_->log();

    daemon_->kill9();
    tamper_with_all();
    ASSERT_EQ(denied(), 0);
    start_daemon({"--config", config});
    if (before_answering) {
      EXPECT_EQ(denied(), EPERM) << daemon_->log();
    } else {
      EXPECT_TRUE(within(milliseconds(3000), [&] { return denied() == EPERM; })) << daemon_->log();
    }
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
    EXPECT_EQ(get_policy(att.id()).cidrs_size(), 1) << daemon_->log();
  }
};

// A link detached (BPF_LINK_DETACH, as `bpftool link detach` does) keeps
// its pin, on no cgroup: a new link goes under the pin. A start that
// finds one detached once dropped the attachment whole.
TEST_F(CgroupLinkTamperTest, ADetachedLinkIsReplacedAtTheNextSweepAndAtAStart) {
  expect_put_back(
      [](const std::string& pin) {
        UniqueFd link(bpf_obj_get(pin.c_str()));
        ASSERT_TRUE(link) << pin;
        ASSERT_EQ(bpf_link_detach(link.get()), 0) << pin;
      },
      /*before_answering=*/false);
}

// A link another program put a program of its own in (BPF_LINK_UPDATE)
// stays on the cgroup, running that program: ours goes back in it. A
// start does it as it adopts the links, before it answers.
TEST_F(CgroupLinkTamperTest, AProgramAnotherPutInALinkIsSwappedBackAtTheNextSweepAndAtAStart) {
  expect_put_back(put_pass_all_program_in_link, /*before_answering=*/true);
}

// The whole pin directory removed while the daemon runs: maps and links
// are pinned again, so that the next start adopts the state (learned
// hosts, flows) instead of starting afresh, and enforcement never lapses
// for longer than the removal takes to reach the daemon.
TEST_F(DaemonE2eTest, ARemovedPinDirectoryIsPinnedAgainAndTheNextStartAdoptsIt) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  const size_t pins = files_under(pin_dir_ + "/maps") + files_under(pin_dir_ + "/links");
  {
    // Stopped, so that the removal is whole: a daemon that runs may put a
    // cgroup's links back under `rm -rf` before it reaches the maps, and
    // the removal then stops at a directory no longer empty.
    StoppedProcess stopped(daemon_->pid());
    std::filesystem::remove_all(pin_dir_);
  }
  EXPECT_TRUE(within(milliseconds(3000), [&] {
    return files_under(pin_dir_ + "/maps") + files_under(pin_dir_ + "/links") == pins;
  })) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"event\":\"map_pins_restored\""), std::string::npos);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  daemon_->kill9();
  start_daemon();
  EXPECT_NE(daemon_->log().find("attachment_adopted"), std::string::npos) << daemon_->log();
  EXPECT_EQ(daemon_->log().find("attachment_restored"), std::string::npos) << daemon_->log();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(get_policy(att.id()).cidrs_size(), 1);
}

// The state directory removed while the daemon runs (a cleanup that took
// it for a cache): the file is written again at once. Without it, the
// next start found every attachment unrecorded and detached it.
TEST_F(DaemonE2eTest, ARemovedStateDirectoryIsWrittenAgainAndTheNextStartAdoptsIt) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  {
    StoppedProcess stopped(daemon_->pid());  // so that the removal is whole
    std::filesystem::remove_all(state_dir());
  }
  const auto written = [&] { return std::filesystem::exists(state_file()); };
  EXPECT_TRUE(within(milliseconds(3000), written)) << daemon_->log();
  EXPECT_NE(daemon_->log().find("\"event\":\"state_file_restored\""), std::string::npos);
  // The directory made again is watched as the first was; one moved
  // aside is as good as removed.
  std::filesystem::remove(state_file());
  EXPECT_TRUE(within(milliseconds(3000), written)) << daemon_->log();
  std::filesystem::rename(state_dir(), state_dir() + ".aside");
  EXPECT_TRUE(within(milliseconds(3000), written)) << daemon_->log();
  std::filesystem::remove(state_file());
  EXPECT_TRUE(within(milliseconds(3000), written)) << daemon_->log();

  daemon_->kill9();
  start_daemon();
  EXPECT_EQ(daemon_->log().find("unrecorded_attachment_detached"), std::string::npos)
      << daemon_->log();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(get_policy(att.id()).cidrs_size(), 1);
}

// Removed as a stop begins, before the watcher can see it: a stop that
// leaves enforcement writes the file for the next start, one that detaches
// all still does (it failed, leaving everything attached, for want of the
// directory).
TEST_F(DaemonE2eTest, AStateDirectoryRemovedAsAStopBeginsLosesNothing) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  const auto remove_and_stop = [&] {
    StoppedProcess stopped(daemon_->pid());
    std::filesystem::remove_all(state_dir());
    kill(daemon_->pid(), SIGTERM);
  };
  remove_and_stop();
  EXPECT_EQ(daemon_->wait_exit(std::chrono::seconds(10)), 0) << daemon_->log();
  start_daemon({"--detach-on-exit"});
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(get_policy(att.id()).cidrs_size(), 1);

  remove_and_stop();
  EXPECT_EQ(daemon_->wait_exit(std::chrono::seconds(10)), 0) << daemon_->log();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_FALSE(std::filesystem::exists(pin_dir_ + "/links"));
}

TEST_F(DaemonE2eTest, SigkillAndRestartKeepIdsPolicyAndEnforcement) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att =
      attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}), {{"tenant", "t1"}});
  const v1::Policy before = get_policy(att.id());

  const std::string marker = dir() + "/probing";
  std::ofstream(marker).put('1');
  Child prober([&] {
    if (!cgroup_->add_self()) return 82;
    int rounds = 0;
    while (std::filesystem::exists(marker) || rounds < 5) {
      if (tcp_echo("198.51.100.2", kEchoPort) != 0) return 1;      // allowed traffic cut
      if (tcp_echo("198.51.100.3", kEchoPort) != EPERM) return 2;  // denied traffic let out
      ++rounds;
    }
    return 0;
  });

  std::this_thread::sleep_for(milliseconds(300));
  daemon_->kill9();
  // The gap: no daemon at all.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  std::this_thread::sleep_for(milliseconds(300));
  start_daemon();
  std::this_thread::sleep_for(milliseconds(300));
  std::filesystem::remove(marker);
  EXPECT_EQ(prober.wait(std::chrono::seconds(20)), 0) << "1: allowed cut, 2: denied let out";

  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  ASSERT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(list.attachments(0).id(), att.id());
  EXPECT_EQ(list.attachments(0).metadata().at("tenant"), "t1");
  EXPECT_EQ(list.attachments(0).dns().port(), att.dns().port());
  EXPECT_EQ(get_policy(att.id()).SerializeAsString(), before.SerializeAsString());
  EXPECT_NE(daemon_->log().find("attachment_adopted"), std::string::npos);
  // Ids keep counting from where they were.
  TestCgroup second("sebpf-second-" + topo_->tag());
  v1::AttachRequest req;
  req.set_cgroup_path(second.path());
  v1::Attachment att2;
  ASSERT_TRUE(attach(req, &att2).ok());
  EXPECT_NE(att2.id(), att.id());
}

TEST_F(DaemonE2eTest, CleanStopLeavesEnforcementUnlessAskedToDetach) {
  topo_->start_peer_server();
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  start_daemon({"--detach-on-exit"});
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_FALSE(std::filesystem::exists(pin_dir_ + "/links"));
}

// Under systemd (Type=notify in dist/systemd), READY=1 is sent once the API
// answers, so that a unit ordered after superebpfd (a container runtime
// attaching each container) never finds it absent; RELOADING=1 and READY=1 across a
// reload, STOPPING=1 at a stop.
TEST_F(DaemonE2eTest, SystemdIsToldWhenTheDaemonServesReloadsAndStops) {
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid());
  daemon_ = std::make_unique<DaemonProcess>(SEBPF_DAEMON_PATH, dir(), pin_dir_,
                                            std::vector<std::string>{}, &systemd);
  const std::string ready = systemd.next_message();
  EXPECT_TRUE(ready.starts_with("READY=1")) << ready;
  // At that instant the API answers at its first try.
  grpc::ClientContext ctx;
  ctx.set_deadline(soon());
  v1::ListResponse list;
  stub_ = v1::DaemonService::NewStub(
      grpc::CreateChannel("unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  EXPECT_TRUE(stub_->List(&ctx, v1::ListRequest(), &list).ok());
  EXPECT_NE(daemon_->log().find("\"event\":\"ready\""), std::string::npos);

  // A reload (systemctl reload: SIGHUP) re-executes the daemon in the same
  // process: systemd hears it begin, and end once the new one serves.
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_EQ(systemd.next_message(), "RELOADING=1");
  const std::string reloaded = systemd.next_message();
  EXPECT_TRUE(reloaded.starts_with("READY=1")) << reloaded;

  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(systemd.next_message(), "STOPPING=1");
}

// A reload re-executes the daemon in the same process, handing over the
// API's listening socket: a client calling meanwhile is made to wait, not
// refused for want of a daemon.
TEST_F(DaemonE2eTest, ApiCallsThroughAReloadWaitForTheNewProcess) {
  start_daemon();
  ApiCaller caller(*stub_);
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  const bool reloaded = daemon_->wait_for_log("\"event\":\"ready\"", 2, std::chrono::seconds(15));
  std::this_thread::sleep_for(milliseconds(300));
  caller.finish();
  ASSERT_TRUE(reloaded) << daemon_->log();
  caller.expect_served(2);
  EXPECT_NE(daemon_->log().find("\"taken_over\":\"true\""), std::string::npos) << daemon_->log();
}

// Under systemd's socket activation the API socket is systemd's: it stays
// open while the daemon stops and starts again, so calls made during a
// restart wait for the next process instead of failing, and no stop (nor
// that of a process a reload started) removes its file.
TEST_F(DaemonE2eTest, UnderSocketActivationApiCallsThroughARestartWaitForTheNextProcess) {
  const std::string path = DaemonProcess::socket_in(dir());
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid() && systemd.listen_stream(path, "superebpfd.socket"))
      << strerror(errno);
  const auto start = [&] {
    daemon_ = std::make_unique<DaemonProcess>(SEBPF_DAEMON_PATH, dir(), pin_dir_,
                                              std::vector<std::string>{}, &systemd);
    return daemon_->wait_ready() != nullptr;
  };
  ASSERT_TRUE(start()) << daemon_->log();
  auto stub = v1::DaemonService::NewStub(
      grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials()));
  ApiCaller caller(*stub);
  std::this_thread::sleep_for(milliseconds(300));
  // A restart: the socket file outlives the stop, and calls meanwhile queue.
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the stop removed systemd's socket file";
  std::this_thread::sleep_for(milliseconds(200));
  const bool restarted = start();
  // A reload, then a stop: the process the reload started knows the
  // socket is systemd's.
  const bool reloaded = restarted && kill(daemon_->pid(), SIGHUP) == 0 &&
                        daemon_->wait_for_log("\"event\":\"ready\"", 3, std::chrono::seconds(15));
  std::this_thread::sleep_for(milliseconds(300));
  caller.finish();
  ASSERT_TRUE(restarted && reloaded) << daemon_->log();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the reloaded process's stop removed the file";
  caller.expect_served(4);
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"true\""), std::string::npos) << daemon_->log();
}

// The API's socket systemd kept for the next process (its file descriptor
// store) is of no use if its file was removed meanwhile (by hand, say): the
// next process says so, makes its own, and has systemd keep that one.
TEST_F(DaemonE2eTest, AStoredApiSocketWhoseFileIsGoneIsReplaced) {
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid());
  start_daemon({}, "", &systemd);
  EXPECT_EQ(daemon_->terminate(), 0);
  systemd.take_in();
  ASSERT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}}));
  ASSERT_EQ(unlink(daemon_->socket().c_str()), 0) << "the stop left the stored socket's file";
  start_daemon({}, "", &systemd);
  EXPECT_NE(daemon_->log().find("its file is gone"), std::string::npos) << daemon_->log();
  systemd.take_in();
  EXPECT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}})) << "replaced";
  EXPECT_EQ(daemon_->terminate(), 0);
  systemd.take_in();
  start_daemon({}, "", &systemd);  // the replacement serves
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"true\""), std::string::npos);
}

// A socket systemd passes that is not a listening Unix stream socket (a
// socket unit with ListenDatagram=, say) is named in the log and closed;
// the daemon makes its own API socket.
TEST_F(DaemonE2eTest, ASocketSystemdPassesThatIsNotTheApisIsNamedAndLeftOut) {
  FakeSystemd systemd(dir());
  UniqueFd datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(systemd.valid() && datagram);
  systemd.add_socket_unit(std::move(datagram), "superebpfd.socket");
  start_daemon({}, "", &systemd);
  EXPECT_NE(daemon_->log().find("systemd_socket_rejected"), std::string::npos) << daemon_->log();
  EXPECT_NE(daemon_->log().find("not a listening Unix stream socket"), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"false\""), std::string::npos);
}

// The log is JSON lines from start to stop. A stop takes the packet-socket
// filter off the host's interfaces; with nothing attached none has it (nor
// a qdisc for it), and the kernel's complaint at each detach went to the
// log as a line of plain text per interface.
TEST_F(DaemonE2eTest, TheLogIsJsonLinesFromStartToStop) {
  start_daemon({"--detach-on-exit"});
  EXPECT_EQ(daemon_->terminate(), 0);
  expect_log_is_json_lines();
}

// A control plane keeps its channel to the daemon open. gRPC's shutdown
// waits for such a connection as for a running call, until its deadline
// (2 s): every restart took that long while a client was connected. The
// daemon waits for running calls only.
// The API socket's file removed (a cleanup of /run) or moved away while
// the daemon runs: a socket is bound again at its path, as the start made
// it, so that clients find the daemon without a restart.
TEST_F(DaemonE2eTest, ARemovedApiSocketIsBoundAgain) {
  start_daemon();
  const std::string socket = daemon_->socket();
  const auto answers_anew = [&] {
    auto stub = v1::DaemonService::NewStub(
        grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ListResponse list;
    return stub->List(&ctx, v1::ListRequest(), &list).ok();
  };
  const auto bound = [&] {
    struct stat st {};
    return lstat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0660;
  };
  std::filesystem::remove(socket);
  EXPECT_TRUE(within(milliseconds(3000), bound)) << daemon_->log();
  EXPECT_TRUE(answers_anew());
  std::filesystem::rename(socket, socket + ".aside");
  EXPECT_TRUE(within(milliseconds(3000), bound)) << daemon_->log();
  EXPECT_TRUE(answers_anew());
  EXPECT_TRUE(daemon_->wait_for_log("\"event\":\"api_socket_restored\"", 2, milliseconds(100)));
  // Ours, as the first was: a stop removes it.
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_FALSE(std::filesystem::exists(socket));
}

// Under systemd, the socket bound again goes in its file descriptor store,
// and what the next start is passed is served only if its file is the one
// at the path. Here the next start is passed both the socket unit's, whose
// file was removed (its path now holds the new socket's file), and the
// stored one: the stale one, passed first, was served, and every call
// queued in the stored one unanswered; or, after the stop that follows,
// the daemon refused to start, since the path answered (systemd's socket).
TEST_F(DaemonE2eTest, AnApiSocketBoundAgainIsTheOneSystemdKeeps) {
  const std::string path = DaemonProcess::socket_in(dir());
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid() && systemd.listen_stream(path, "superebpfd.socket"))
      << strerror(errno);
  start_daemon({}, "", &systemd);
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"api_socket_restored\"", 1, milliseconds(3000)))
      << daemon_->log();
  systemd.take_in();
  EXPECT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}}));
  daemon_->kill9();  // a crash: the new socket's file stays
  start_daemon({}, "", &systemd);
  v1::ListResponse list;
  EXPECT_TRUE(call_list(&list).ok()) << daemon_->log();
  EXPECT_NE(daemon_->log().find("systemd_socket_rejected"), std::string::npos) << daemon_->log();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the stop removed the stored socket's file";
  systemd.take_in();
  start_daemon({}, "", &systemd);
  EXPECT_TRUE(call_list(&list).ok()) << daemon_->log();
}

TEST_F(DaemonE2eTest, AClientKeepingItsConnectionOpenDoesNotHoldUpAStop) {
  start_daemon();
  {
    grpc::ClientContext ctx;
    v1::ListRequest req;
    v1::ListResponse resp;
    ASSERT_TRUE(stub_->List(&ctx, req, &resp).ok());  // the channel is connected, and idle
  }
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(1))
      << "the stop waited for the idle connection";
}

TEST_F(DaemonE2eTest, DamagedStateFileIsReportedNotTrusted) {
  topo_->start_peer_server();
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  daemon_->kill9();
  {
    // Flip a byte of the header's checksum. (Writing a fixed value changed
    // nothing whenever the checksum already held it: one run in 256.)
    std::fstream f(state_file(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(20);
    const int byte = f.get();
    ASSERT_NE(byte, std::char_traits<char>::eof());
    f.seekp(20);
    f.put(static_cast<char>(byte ^ 0xff));
  }
  DaemonProcess broken(SEBPF_DAEMON_PATH, dir(), pin_dir_);
  EXPECT_EQ(broken.wait_exit(std::chrono::seconds(10)), 1);
  EXPECT_NE(broken.log().find("will not guess"), std::string::npos) << broken.log();
  // The kernel kept enforcing meanwhile.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
}

// A path another user could write would let them choose the policy (the
// policy file) or replace what enforces it (the state, socket and pin
// directories). A start refuses such a path, naming it and the fix, and
// touches nothing; so does a reload, and the running daemon goes on.
TEST_F(DaemonE2eTest, PathsAnotherUserCouldWriteAreRefusedAtAStartAndAtAReload) {
  topo_->start_peer_server();
  // Its own directory: what it prints is no JSON log (TearDown reads ours).
  const std::string shared = dir() + "/shared";
  std::filesystem::create_directory(shared);
  ASSERT_EQ(chmod(shared.c_str(), 0777), 0);
  DaemonProcess refused(SEBPF_DAEMON_PATH, shared, pin_dir_);
  EXPECT_EQ(refused.wait_exit(std::chrono::seconds(10)), 2);
  EXPECT_NE(refused.log().find(shared + " is writable by every user"), std::string::npos)
      << refused.log();
  EXPECT_NE(refused.log().find("chmod o-w " + shared), std::string::npos) << refused.log();
  EXPECT_FALSE(std::filesystem::exists(pin_dir_)) << "nothing pinned";
  EXPECT_FALSE(std::filesystem::exists(shared + "/state")) << "nothing written";

  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\npolicies: []\n";
  start_daemon({"--policy-file", policy_path});
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  constexpr uid_t kNobody = 65534;
  ASSERT_EQ(chown(policy_path.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"reload_refused\"", 1, std::chrono::seconds(5)));
  EXPECT_NE(daemon_->log().find("policy_file " + policy_path + ": " + policy_path +
                                " is owned by uid 65534, not root"),
            std::string::npos)
      << daemon_->log();
  v1::ListResponse list;
  EXPECT_TRUE(call_list(&list).ok()) << "still serving";
  EXPECT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "and enforcing";
}

TEST_F(DaemonE2eTest, PolicyFileSelectsByMetadata) {
  topo_->start_peer_server();
  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\n"
                                "policies:\n"
                                "  - name: agent\n"
                                "    match: {role: agent}\n"
                                "    mode: allowlist\n"
                                "    allow_cidrs: [198.51.100.2/32]\n"
                                "    allow_domains: [mirror.example.org]\n";
  start_daemon({"--policy-file", policy_path});
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  (*req.mutable_metadata())["role"] = "agent";
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  EXPECT_EQ(att.applied_policy(), "agent");
  const v1::Policy policy = get_policy(att.id());
  ASSERT_EQ(policy.domains_size(), 1);
  EXPECT_EQ(policy.domains(0).domain(), "mirror.example.org");
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

// Domain rules cost the daemon memory and the state file bytes, and every
// change writes that file whole: no caller may add them without end. Past
// dns.max_domain_rules a change is refused and changes nothing; a policy
// already past it (the cap was lowered at a restart) is kept whole and may
// only shed rules.
TEST_F(DaemonE2eTest, DomainRulesPastTheCapAreRefusedAndAPolicyPastALoweredCapIsKept) {
  const auto with_domains = [](std::vector<std::string> names) {
    v1::Policy policy = make_policy(v1::MODE_ALLOWLIST, {});
    for (const std::string& name : names) {
      v1::DomainRule* rule = policy.add_domains();
      rule->set_domain(name);
      rule->set_action(v1::ACTION_ALLOW);
    }
    return policy;
  };
  const auto add_domain = [this](const std::string& id, const std::string& name, v1::Action action,
                                 std::string* reason = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddDomainRequest req;
    req.set_id(id);
    req.mutable_rule()->set_domain(name);
    req.mutable_rule()->set_action(action);
    v1::Policy out;
    const grpc::Status status = stub_->AddDomain(&ctx, req, &out);
    if (reason != nullptr) *reason = reason_of(ctx);
    return status;
  };
  const auto replace = [this](const std::string& id, const v1::Policy& policy) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ReplacePolicyRequest req;
    req.set_id(id);
    *req.mutable_policy() = policy;
    v1::Policy out;
    return stub_->ReplacePolicy(&ctx, req, &out);
  };

  // A policy-file entry past the cap: the start is refused, naming it.
  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\n"
                                "policies:\n"
                                "  - name: long\n"
                                "    allow_domains: [a.example, b.example, c.example]\n";
  const std::string capped = config_file("dns:\n  max_domain_rules: 2\n");
  {
    // Its own directory: what it prints is no JSON log (TearDown reads ours).
    const std::string own = dir() + "/refused";
    std::filesystem::create_directory(own);
    DaemonProcess refused(SEBPF_DAEMON_PATH, own, pin_dir_,
                          {"--config", capped, "--policy-file", policy_path});
    EXPECT_EQ(refused.wait_exit(std::chrono::seconds(10)), 2);
    EXPECT_NE(refused.log().find(policy_path +
                                 ": policy \"long\": the policy would hold 3 domain rules, more "
                                 "than 2 (dns.max_domain_rules), so no attach could use it"),
              std::string::npos)
        << refused.log();
  }

  start_daemon({"--config", capped});
  v1::AttachRequest over;
  over.set_cgroup_path(cgroup_->path());
  *over.mutable_policy() = with_domains({"a.example", "b.example", "c.example"});
  v1::Attachment none;
  const grpc::Status attach_refused = attach(over, &none);
  EXPECT_EQ(attach_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(attach_refused.error_message(),
            "attach " + cgroup_->path() +
                ": the policy would hold 3 domain rules, more than 2 (dns.max_domain_rules)");
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 0) << "nothing attached";

  const v1::Attachment att = attach_cgroup(with_domains({"a.example", "b.example"}));
  std::string reason;
  const grpc::Status add_refused = add_domain(att.id(), "c.example", v1::ACTION_ALLOW, &reason);
  EXPECT_EQ(add_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(add_refused.error_message(),
            "policy of " + att.id() +
                ": the policy would hold 3 domain rules, more than 2 (dns.max_domain_rules)");
  EXPECT_EQ(reason, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(add_domain(att.id(), "a.example", v1::ACTION_DENY).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "the other action on a name held is a rule more";
  EXPECT_TRUE(add_domain(att.id(), "a.example", v1::ACTION_ALLOW).ok())
      << "a rule held already adds nothing";
  EXPECT_EQ(replace(att.id(), with_domains({"c.example", "d.example", "e.example"})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  const v1::Policy kept = get_policy(att.id());
  ASSERT_EQ(kept.domains_size(), 2) << "nothing changed";
  EXPECT_EQ(kept.domains(0).domain(), "a.example");
  EXPECT_EQ(kept.domains(1).domain(), "b.example");

  // A cap lowered at a restart: the policy is kept whole; it may shed
  // rules, not gain them.
  EXPECT_EQ(daemon_->terminate(), 0);
  start_daemon({"--config", config_file("dns:\n  max_domain_rules: 1\n")});
  EXPECT_EQ(get_policy(att.id()).domains_size(), 2);
  EXPECT_EQ(add_domain(att.id(), "c.example", v1::ACTION_ALLOW).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(replace(att.id(), with_domains({"c.example", "d.example"})).ok())
      << "as many as it holds";
  EXPECT_TRUE(replace(att.id(), with_domains({"d.example"})).ok());
  EXPECT_EQ(replace(att.id(), with_domains({"d.example", "e.example"})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "back under the cap, it stays under";
}

// Every reply to a policy call carries the whole policy, and a gRPC
// client reads at most 4 MiB by default: a change that would make the
// policy larger is refused, so that any client can read it back, and send
// it back as it is.
TEST_F(DaemonE2eTest, APolicyNeverGrowsPastWhatAClientWithDefaultLimitsCanRead) {
  // 253 characters, the longest a name may be.
  const auto longest_name = [](int n) {
    const std::string label(63, 'a');
    const std::string first = "n" + std::to_string(n) + "-";
    return first + std::string(61 - first.size(), 'a') + "." + label + "." + label + "." + label;
  };
  start_daemon({"--config", config_file("dns:\n  max_domain_rules: 20000\n")});
  v1::Policy policy = make_policy(v1::MODE_ALLOWLIST, {});
  // 261 bytes a rule: the attach request still fits 4 MiB, and a few more
  // rules fit before the policy is past the bound.
  constexpr int kAttached = 16060;
  for (int i = 0; i < kAttached; ++i) {
    v1::DomainRule* rule = policy.add_domains();
    rule->set_domain(longest_name(i));
    rule->set_action(v1::ACTION_ALLOW);
  }
  const v1::Attachment att = attach_cgroup(policy);
  grpc::Status refused;
  int added = 0;
  for (; added < 200; ++added) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddDomainRequest req;
    req.set_id(att.id());
    req.mutable_rule()->set_domain(longest_name(kAttached + added));
    req.mutable_rule()->set_action(v1::ACTION_ALLOW);
    v1::Policy out;
    refused = stub_->AddDomain(&ctx, req, &out);
    if (!refused.ok()) break;
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(
      refused.error_message().find("(what a client with gRPC's default 4 MiB limit can read back)"),
      std::string::npos)
      << refused.error_message();
  EXPECT_GT(added, 0) << "the attach left room";

  const v1::Policy held = get_policy(att.id());
  EXPECT_EQ(held.domains_size(), kAttached + added);
  grpc::ClientContext ctx;
  ctx.set_deadline(soon());
  v1::ReplacePolicyRequest req;
  req.set_id(att.id());
  *req.mutable_policy() = held;
  v1::Policy out;
  const grpc::Status sent_back = stub_->ReplacePolicy(&ctx, req, &out);
  EXPECT_TRUE(sent_back.ok()) << sent_back.error_message();

  // Replies this large do not fit the socket at once, and gRPC then polls
  // in a thread of its own for up to 10 s, which its last shutdown waited
  // for: a stop (and so a restart's gap) must not.
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(2))
      << "the stop waited for gRPC's poller";
}

TEST_F(DaemonE2eTest, BadInputIsRefusedNamingTheField) {
  start_daemon();
  v1::Attachment existing = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));

  struct Case {
    std::string what;
    std::function<grpc::Status(grpc::ClientContext*)> call;
    grpc::StatusCode code;
    std::string message_prefix;
    std::string reason;
  };
  auto attach_with = [&](std::function<void(v1::AttachRequest&)> fill) {
    return [this, fill](grpc::ClientContext* ctx) {
      v1::AttachRequest req;
      fill(req);
      v1::Attachment out;
      return stub_->Attach(ctx, req, &out);
    };
  };
  auto add_cidr = [&](std::string id, std::string cidr, v1::Action action, uint64_t ttl) {
    return [this, id, cidr, action, ttl](grpc::ClientContext* ctx) {
      v1::AddCidrRequest req;
      req.set_id(id);
      req.mutable_rule()->set_cidr(cidr);
      req.mutable_rule()->set_action(action);
      req.mutable_rule()->set_ttl_seconds(ttl);
      v1::Policy out;
      return stub_->AddCidr(ctx, req, &out);
    };
  };
  const std::string id = existing.id();
  using C = grpc::StatusCode;
  const std::vector<Case> cases = {
      {"no target", attach_with([](auto&) {}), C::INVALID_ARGUMENT, "target:", "INVALID_ARGUMENT"},
      {"missing cgroup", attach_with([](auto& r) { r.set_cgroup_path("/no/such/cgroup"); }),
       C::NOT_FOUND, "cgroup_path:", "NOT_FOUND"},
      {"cgroup outside the hierarchy", attach_with([](auto& r) { r.set_cgroup_path("/tmp"); }),
       C::INVALID_ARGUMENT, "cgroup_path:", "INVALID_ARGUMENT"},
      {"the same cgroup again",
       attach_with([this](auto& r) { r.set_cgroup_path(cgroup_->path()); }), C::ALREADY_EXISTS,
       cgroup_->path() + " is attached already as " + id, "ALREADY_ATTACHED"},
      {"bad interface name", attach_with([](auto& r) { r.set_interface_name("bad/name"); }),
       C::INVALID_ARGUMENT, "interface_name:", "INVALID_ARGUMENT"},
      {"unknown interface", attach_with([](auto& r) { r.set_interface_name("sebpfnope0"); }),
       C::NOT_FOUND, "", "NOT_FOUND"},
      {"pid 0", attach_with([](auto& r) { r.set_pid(0); }), C::INVALID_ARGUMENT,
       "pid:", "INVALID_ARGUMENT"},
      {"no such pid", attach_with([](auto& r) { r.set_pid(999999999); }), C::NOT_FOUND,
       "pid:", "NOT_FOUND"},
      {"bad metadata key", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         (*r.mutable_metadata())["bad key"] = "x";
       }),
       C::INVALID_ARGUMENT, "metadata[bad key]:", "INVALID_ARGUMENT"},
      {"policy without mode", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         r.mutable_policy()->set_dns_mode(v1::MODE_ALLOWLIST);
       }),
       C::INVALID_ARGUMENT, "policy.mode:", "INVALID_ARGUMENT"},
      {"bad CIDR in a policy", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         *r.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.0/24", "300.1.1.1/8"});
       }),
       C::INVALID_ARGUMENT, "policy.cidrs[1].cidr:", "INVALID_ARGUMENT"},
      {"repeated rule", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         *r.mutable_policy() =
             make_policy(v1::MODE_ALLOWLIST, {"198.51.100.0/24", "198.51.100.0/24"});
       }),
       C::INVALID_ARGUMENT, "policy.cidrs[1]: repeats policy.cidrs[0]", "INVALID_ARGUMENT"},
      {"host bits set", add_cidr(id, "198.51.100.7/24", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "rule.cidr:", "INVALID_ARGUMENT"},
      {"no action", add_cidr(id, "198.51.100.7", v1::ACTION_UNSPECIFIED, 0), C::INVALID_ARGUMENT,
       "rule.action:", "INVALID_ARGUMENT"},
      {"TTL of a century", add_cidr(id, "198.51.100.7", v1::ACTION_ALLOW, 100ull * 365 * 86400),
       C::INVALID_ARGUMENT, "rule.ttl_seconds:", "INVALID_ARGUMENT"},
      {"empty id", add_cidr("", "198.51.100.7", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "id:", "INVALID_ARGUMENT"},
      {"malformed id", add_cidr("att-x", "198.51.100.7", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "id:", "INVALID_ARGUMENT"},
      {"unknown id", add_cidr("att-999999", "198.51.100.7", v1::ACTION_ALLOW, 0), C::NOT_FOUND,
       "no attachment att-999999", "NOT_FOUND"},
      {"bad domain",
       [&](grpc::ClientContext* ctx) {
         v1::AddDomainRequest req;
         req.set_id(id);
         req.mutable_rule()->set_domain("bad..example");
         req.mutable_rule()->set_action(v1::ACTION_DENY);
         v1::Policy out;
         return stub_->AddDomain(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "rule.domain:", "INVALID_ARGUMENT"},
      {"removing a rule that is not there",
       [&](grpc::ClientContext* ctx) {
         v1::RemoveCidrRequest req;
         req.set_id(id);
         req.set_cidr("203.0.113.0/24");
         v1::Policy out;
         return stub_->RemoveCidr(ctx, req, &out);
       },
       C::NOT_FOUND, "no rule for 203.0.113.0/24", "NOT_FOUND"},
      {"bad mode",
       [&](grpc::ClientContext* ctx) {
         v1::SetModeRequest req;
         req.set_id(id);
         req.set_mode(static_cast<v1::Mode>(42));
         v1::Policy out;
         return stub_->SetMode(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "mode:", "INVALID_ARGUMENT"},
      {"replace without a policy",
       [&](grpc::ClientContext* ctx) {
         v1::ReplacePolicyRequest req;
         req.set_id(id);
         v1::Policy out;
         return stub_->ReplacePolicy(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "policy:", "INVALID_ARGUMENT"},
  };
  for (const Case& c : cases) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    const grpc::Status status = c.call(&ctx);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.message_prefix, 0), 0U)
        << c.what << ": " << status.error_message();
    EXPECT_EQ(reason_of(ctx), c.reason) << c.what;
  }
  // None of it changed anything.
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(get_policy(id).cidrs_size(), 0);
}

}  // namespace
}  // namespace sebpf::testing
