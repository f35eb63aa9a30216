// superebpfd end to end, targets: an attached interface filters its
// guest; an interface that holds (or comes to hold) the host's default
// route is refused or named, route events lost or not; a daemon moved into
// an attached cgroup is named, as is a process whose user may move it out
// of an attached cgroup (with the cgroup its cgroup namespace reaches);
// removed cgroups and deleted, moved or renamed interfaces are followed
// within a second.
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "daemon_e2e_helpers.h"
#include "daemon_fixture.h"
#include "datapath/system.h"
#include "support/cgroup.h"
#include "support/netns.h"
#include "support/process.h"
#include "support/sockets.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

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

// A user to whom a cgroup above the attached one is delegated (a systemd
// user session's, say) may move their processes anywhere under it, so a
// workload running as that user can leave the attachment. The Attachment
// names such a process and the cgroup to attach instead, and what it says
// holds: the process moves itself out, and what was refused is not.
TEST_F(DaemonE2eTest, AProcessWhoseUserMayMoveItOutOfTheAttachmentIsNamed) {
  start_daemon();
  constexpr uid_t kUser = 65534;
  const std::string name = "sebpf-delegated-" + topo_->tag();
  TestCgroup delegated(name, kUser);
  TestCgroup agent(name + "/agent", kUser);
  TestCgroup elsewhere(name + "/elsewhere", kUser);
  struct stat procs {};
  ASSERT_EQ(stat((elsewhere.path() + "/cgroup.procs").c_str(), &procs), 0);
  ASSERT_EQ(procs.st_uid, kUser) << "not delegated";
  Rendezvous meet;
  ASSERT_TRUE(meet.valid());
  Child workload([&] {
    // Only the move is left to get it past the attachment.
    for (const int cap : {CAP_NET_RAW, CAP_NET_ADMIN}) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return 80;
    }
    if (!agent.add_self() || setresgid(kUser, kUser, kUser) != 0 ||
        setresuid(kUser, kUser, kUser) != 0) {
      return 81;
    }
    if (!meet.ready_then_wait()) return 82;
    if (tcp_echo("198.51.100.2", kEchoPort) != EPERM) return 83;
    if (!elsewhere.add_self()) return 84;
    // Reaches the peer (no echo server runs there: refused by it, not us).
    return tcp_echo("198.51.100.2", kEchoPort) == ECONNREFUSED ? 0 : 85;
  });
  meet.forked();
  ASSERT_TRUE(meet.wait_ready()) << "the workload ended with " << workload.wait();
  v1::AttachRequest req;
  req.set_cgroup_path(agent.path());
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {});
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  ASSERT_EQ(att.warnings_size(), 1);
  EXPECT_EQ(att.warnings(0).find("process " + std::to_string(workload.pid()) +
                                 " may move themselves out of this attachment"),
            0U)
      << att.warnings(0);
  EXPECT_NE(att.warnings(0).find("Attach " + delegated.path() + " instead"), std::string::npos)
      << att.warnings(0);
  ASSERT_TRUE(meet.go());
  EXPECT_EQ(workload.wait(), 0) << "refused while attached, then out of the attachment's reach";
}

// Writes "0" (the writer itself) to a cgroup.procs; false if refused.
bool move_self(const std::string& procs) {
  const UniqueFd fd(open(procs.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && write(fd.get(), "0", 1) == 1;
}

// A process in a cgroup namespace of its own reaches, to move itself, the
// cgroups under its namespace's root if the hierarchy is mounted with
// nsdelegate; without it, what its cgroup v2 mounts show. A container
// that mounts the hierarchy anew in a mount namespace of its own is held
// at its namespace's root either way, and named with that root to attach
// instead; one that sees the host's mount is held there only with
// nsdelegate, and named with the cgroup it reaches.
TEST_F(DaemonE2eTest, AProcessInACgroupNamespaceIsNamedWithTheCgroupItReaches) {
  start_daemon();
  const std::string hierarchy = cgroup2_root();
  const auto mounts = datapath::cgroup2_mounts("/proc/self/mountinfo");
  ASSERT_TRUE(mounts.has_value());
  const bool ns_delegate = std::any_of(
      mounts->begin(), mounts->end(),
      [&](const datapath::Cgroup2Mount& m) { return m.mount_point == hierarchy && m.ns_delegate; });
  constexpr uid_t kUser = 65534;
  const std::string name = "sebpf-cgroupns-" + topo_->tag();
  TestCgroup delegated(name, kUser);
  TestCgroup container(name + "/container", kUser);
  TestCgroup agent(name + "/container/agent", kUser);
  TestCgroup sibling(name + "/container/sibling", kUser);
  TestCgroup outside(name + "/outside", kUser);
  // Made as a runtime makes a container: its cgroup namespace at its
  // cgroup, then its workload started in a cgroup below; `own_mount`: in a
  // mount namespace whose cgroup v2 mount is made there (rooted at the
  // namespace's root). Only the move is left to get it past the
  // attachment. Ends 0 having left for `outside`, 1 for `sibling`.
  const auto workload = [&](Rendezvous& meet, bool own_mount) {
    for (const int cap : {CAP_NET_RAW, CAP_NET_ADMIN}) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return 80;
    }
    if (!container.add_self() || unshare(CLONE_NEWCGROUP | (own_mount ? CLONE_NEWNS : 0)) != 0) {
      return 81;
    }
    std::string view = container.path();  // the container's cgroup, as this process sees it
    if (own_mount) {
      if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0 ||
          umount2(hierarchy.c_str(), MNT_DETACH) != 0 ||
          mount("none", hierarchy.c_str(), "cgroup2", 0, nullptr) != 0) {
        return 82;
      }
      view = hierarchy;
    }
    if (!move_self(view + "/agent/cgroup.procs") || setresgid(kUser, kUser, kUser) != 0 ||
        setresuid(kUser, kUser, kUser) != 0) {
      return 83;
    }
    if (!meet.ready_then_wait()) return 84;
    if (tcp_echo("198.51.100.2", kEchoPort) != EPERM) return 85;
    const bool left = move_self(outside.path() + "/cgroup.procs");
    if (!left && !move_self(view + "/sibling/cgroup.procs")) return 86;
    // Reaches the peer (no echo server runs there: refused by it, not us).
    if (tcp_echo("198.51.100.2", kEchoPort) != ECONNREFUSED) return 87;
    return left ? 0 : 1;
  };
  Rendezvous contained_meet, seeing_meet;
  ASSERT_TRUE(contained_meet.valid() && seeing_meet.valid());
  Child contained([&] { return workload(contained_meet, true); });
  contained_meet.forked();
  Child seeing([&] { return workload(seeing_meet, false); });
  seeing_meet.forked();
  ASSERT_TRUE(contained_meet.wait_ready()) << "it ended with " << contained.wait();
  ASSERT_TRUE(seeing_meet.wait_ready()) << "it ended with " << seeing.wait();

  v1::AttachRequest req;
  req.set_cgroup_path(agent.path());
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {});
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  const auto named = [&](const Child& who, const std::string& dir) {
    return std::any_of(att.warnings().begin(), att.warnings().end(), [&](const std::string& w) {
      return w.find(" may move themselves out of this attachment") != std::string::npos &&
             w.find(std::to_string(who.pid())) != std::string::npos &&
             w.find("Attach " + dir + " instead") != std::string::npos;
    });
  };
  std::string warnings;
  for (const std::string& w : att.warnings()) warnings += w + "\n";
  EXPECT_TRUE(named(contained, container.path())) << warnings;
  EXPECT_TRUE(named(seeing, ns_delegate ? container.path() : delegated.path()))
      << warnings << (ns_delegate ? "(nsdelegate)" : "(no nsdelegate)");
  EXPECT_EQ(att.warnings_size(), ns_delegate ? 1 : 2) << warnings;

  ASSERT_TRUE(contained_meet.go());
  ASSERT_TRUE(seeing_meet.go());
  EXPECT_EQ(contained.wait(), 1) << "out of the attachment's reach, not out of its namespace's";
  EXPECT_EQ(seeing.wait(), ns_delegate ? 1 : 0)
      << "as far as the warning said, no further: " << warnings;
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

}  // namespace
}  // namespace sebpf::testing
