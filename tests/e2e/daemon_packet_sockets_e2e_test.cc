// superebpfd end to end, packet sockets: an Attachment names the
// processes that may get packets past it (by what any of their threads
// holds); frames of a workload's packet
// sockets do not leave its namespace (a container of another user's
// included, or one whose main thread has exited, and one whose namespace
// the daemon cannot open is refused),
// and the host's interfaces carry the filter that holds them while a
// cgroup needs it; a filter another program deletes, replaces or passes is
// put back.
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "daemon_e2e_helpers.h"
#include "daemon_fixture.h"
#include "datapath/types.h"
#include "foreign_programs.h"
#include "support/netns.h"
#include "support/process.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

// A forked child running `body`, returned once `body` has written a byte
// to the descriptor it is given (its set-up done); null if it did not.
std::unique_ptr<Child> child_once_ready(const std::function<int(int ready_fd)>& body) {
  int ready[2];
  if (pipe(ready) != 0) return nullptr;
  auto child = std::make_unique<Child>([&] {
    close(ready[0]);
    return body(ready[1]);
  });
  close(ready[1]);
  char byte;
  const bool ok = read(ready[0], &byte, 1) == 1;
  close(ready[0]);
  return ok ? std::move(child) : nullptr;
}

// A process of the workload in `cgroup` (and in `netns`, if given) that
// has dropped `dropped` (capabilities) from its bounding set, runs as
// `user` when given (a container's unprivileged user: every capability
// gone), and stays until killed; returns once it is in place.
std::unique_ptr<Child> workload_process(TestCgroup& cgroup, std::vector<int> dropped,
                                        const NetNs* netns = nullptr,
                                        std::optional<uid_t> user = std::nullopt) {
  return child_once_ready([&](int ready_fd) {
    if (!cgroup.add_self()) return 82;
    if (netns != nullptr && !netns->enter()) return 85;
    for (const int cap : dropped) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return 83;
    }
    if (user && (setresgid(*user, *user, *user) != 0 || setresuid(*user, *user, *user) != 0)) {
      return 86;
    }
    if (write(ready_fd, "x", 1) != 1) return 84;
    pause();
    return 0;
  });
}

// A process of the workload in `cgroup` whose main thread has dropped
// `dropped` from its bounding set, while a thread it started before keeps
// them (bounding sets are each thread's own). Stays until killed; returns
// once it is in place.
std::unique_ptr<Child> workload_whose_thread_kept(TestCgroup& cgroup, std::vector<int> dropped) {
  return child_once_ready([&](int ready_fd) {
    if (!cgroup.add_self()) return 82;
    pthread_t thread;
    const auto keeps = [](void*) -> void* {
      pause();
      return nullptr;
    };
    if (pthread_create(&thread, nullptr, keeps, nullptr) != 0) return 83;
    for (const int cap : dropped) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return 84;
    }
    if (write(ready_fd, "x", 1) != 1) return 85;
    pause();
    return 0;
  });
}

// A workload in `cgroup` and `netns` whose main thread has exited while
// another of its threads runs: the cgroup lists the exited one as the
// process, and its /proc/<pid>/ns/net no longer opens. Stays until killed;
// returns once it is in place.
std::unique_ptr<Child> workload_of_an_exited_main_thread(TestCgroup& cgroup, const NetNs& netns) {
  return child_once_ready([&](int ready_fd) {
    if (!cgroup.add_self() || !netns.enter()) return 82;
    // Its packet sockets are what the Attachment may warn about here.
    if (prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) != 0) return 85;
    static int thread_ready_fd;
    thread_ready_fd = ready_fd;
    pthread_t thread;
    const auto lives_on = [](void*) -> void* {
      // Once the main thread has left its namespace, as an exiting thread does.
      const std::string main_netns = "/proc/" + std::to_string(getpid()) + "/ns/net";
      while (UniqueFd(open(main_netns.c_str(), O_RDONLY | O_CLOEXEC))) usleep(1000);
      if (write(thread_ready_fd, "x", 1) != 1) return nullptr;
      pause();
      return nullptr;
    };
    if (pthread_create(&thread, nullptr, lives_on, nullptr) != 0) return 83;
    syscall(SYS_exit, 0);  // this thread only; exit() would end them all
    return 84;
  });
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

// A thread that kept a capability its main thread gave up acts with it
// (and may exec with it): the Attachment names its process.
TEST_F(DaemonE2eTest, AProcessOneOfWhoseThreadsKeptACapabilityIsNamed) {
  start_daemon();
  const auto kept = workload_whose_thread_kept(*cgroup_, {CAP_NET_RAW, CAP_NET_ADMIN});
  ASSERT_NE(kept, nullptr);
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  // CAP_NET_RAW is held: the packet socket filter is where it runs.
  ASSERT_EQ(att.warnings_size(), 1);
  EXPECT_EQ(att.warnings(0).find("process " + std::to_string(kept->pid()) +
                                 " may reconfigure their network namespace"),
            0U)
      << att.warnings(0);
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

// A container's processes are usually another user's, or hold capabilities
// the daemon lacks (CAP_NET_RAW, under a service manager's bounding set):
// opening their namespace then takes CAP_SYS_PTRACE, which the shipped
// unit gives the daemon. With it, the endpoint and the packet socket
// filter are made in the container's namespace.
TEST_F(DaemonE2eTest, AContainerOfAnotherUserIsHeldInItsOwnNamespace) {
  start_daemon();
  const auto resident = workload_process(*cgroup_, {}, &topo_->ns(), /*user=*/65534);
  ASSERT_NE(resident, nullptr);
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  ASSERT_FALSE(att.id().empty());
  EXPECT_TRUE(carries_packet_socket_filter(topo_->peer_if(), &topo_->ns()));
  EXPECT_NE(daemon_->log().find("dns_endpoint_in_workload_netns"), std::string::npos);
  EXPECT_EQ(daemon_->log().find("capability_missing"), std::string::npos);
}

// Without CAP_SYS_PTRACE the daemon cannot open such a namespace. Taking
// the container for one of the host's namespace would serve its DNS where
// it cannot reach it and leave its packet sockets unguarded: the attach is
// refused instead, saying what is missing, and the start said so first.
TEST_F(DaemonE2eTest, AContainerWhoseNamespaceTheDaemonCannotOpenIsNotAttached) {
  start_daemon({}, daemon_with_bounding_set("-sys_ptrace"));
  EXPECT_NE(daemon_->log().find("\"capability_missing\""), std::string::npos) << daemon_->log();
  const auto resident = workload_process(*cgroup_, {}, &topo_->ns(), /*user=*/65534);
  ASSERT_NE(resident, nullptr);

  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {});
  v1::Attachment att;
  const grpc::Status refused = attach(req, &att);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(refused.error_message().find("CAP_SYS_PTRACE"), std::string::npos)
      << refused.error_message();
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 0);
  EXPECT_FALSE(carries_packet_socket_filter(topo_->peer_if(), &topo_->ns()));
}

// A process whose main thread exited while others run is listed by its
// cgroup under the exited thread's id, whose namespace no longer opens:
// the namespace is found through a running thread, not refused.
TEST_F(DaemonE2eTest, AContainerWhoseMainThreadExitedIsHeldInItsOwnNamespace) {
  start_daemon();
  const auto resident = workload_of_an_exited_main_thread(*cgroup_, topo_->ns());
  ASSERT_NE(resident, nullptr);
  ASSERT_FALSE(UniqueFd(
      open(("/proc/" + std::to_string(resident->pid()) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC)))
      << "the main thread's namespace must not open, else this shows nothing";
  const v1::Attachment att = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  ASSERT_FALSE(att.id().empty());
  EXPECT_TRUE(carries_packet_socket_filter(topo_->peer_if(), &topo_->ns()));
  EXPECT_NE(daemon_->log().find("dns_endpoint_in_workload_netns"), std::string::npos);
  EXPECT_EQ(att.warnings_size(), 0) << "its packet sockets are held where it runs: "
                                    << (att.warnings_size() ? att.warnings(0) : "");
}

// A cgroup attached before any process is in it (a pod's, attached as it
// is made) is guarded where the daemon is. A container's process that
// joins it from a namespace of its own is held there from then on: its
// packet sockets' frames do not leave it, and the host's interfaces, which
// no other cgroup attachment needs, are let go of.
TEST_F(DaemonE2eTest, AContainerThatJoinsACgroupAttachedEmptyIsHeldInItsNamespace) {
  // No sweep during the test: what the cgroup's events tell is all there is.
  start_daemon({"--config", config_file("sweep_interval_seconds: 3600\n")});
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  ASSERT_TRUE(carries_packet_socket_filter(topo_->host_if()));
  ASSERT_FALSE(carries_packet_socket_filter(topo_->peer_if(), &topo_->ns()));
  const auto frame_gets_out = [&](const std::function<int(const std::function<int()>&)>& run) {
    UniqueFd rx = frame_listener(topo_->host_if());
    EXPECT_TRUE(rx);
    run([&] { return topo_->ns().enter() ? send_frame(topo_->peer_if()) : 81; });
    return rx && frame_arrives(rx.get(), milliseconds(1000));
  };
  ASSERT_TRUE(frame_gets_out([](const auto& send) { return run_in_child(send); }))
      << "a frame from that namespace must pass now (else this shows nothing)";

  // In its namespace first, then in the cgroup, as a runtime that moves a
  // process it made into the pod's cgroup.
  const auto resident = child_once_ready([&](int ready_fd) {
    if (!topo_->ns().enter() || !cgroup_->add_self()) return 82;
    if (write(ready_fd, "x", 1) != 1) return 84;
    pause();
    return 0;
  });
  ASSERT_NE(resident, nullptr);
  EXPECT_TRUE(within(milliseconds(2000), [&] {
    return carries_packet_socket_filter(topo_->peer_if(), &topo_->ns());
  })) << daemon_->log();
  EXPECT_FALSE(frame_gets_out([&](const auto& send) { return in_cgroup(send); }))
      << "a frame of the workload left its namespace";
  EXPECT_FALSE(carries_packet_socket_filter(topo_->host_if()))
      << "no cgroup attachment is left in the host's namespace";
  EXPECT_EQ(daemon_->log().find("\"level\":\"error\""), std::string::npos) << daemon_->log();
}

// Whether a frame that `send` writes (once a listener is up) arrives on
// `peer_if` in the test namespace.
bool frame_reaches_peer(const NetNs& ns, const std::string& peer_if,
                        const std::function<void()>& send) {
  const auto listener = child_once_ready([&](int ready_fd) {
    if (!ns.enter()) return 81;
    UniqueFd rx = frame_listener(peer_if);
    if (!rx) return 82;
    if (write(ready_fd, "x", 1) != 1) return 83;
    return frame_arrives(rx.get(), milliseconds(1000)) ? 0 : 1;
  });
  if (!listener) return false;
  send();
  return listener->wait() == 0;
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

}  // namespace
}  // namespace sebpf::testing
