// superebpfd end to end, repair: what another program removes or changes
// under the daemon (an interface's filters, a cgroup's link pins or links,
// the pin and state directories) is put back, enforcement resumes, and the
// next start adopts it.
#include <bpf/bpf.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "common/unique_fd.h"
#include "daemon_e2e_helpers.h"
#include "daemon_fixture.h"
#include "datapath/types.h"
#include "foreign_programs.h"
#include "support/process.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

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

}  // namespace
}  // namespace sebpf::testing
