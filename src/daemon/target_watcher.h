// Notices, from kernel events, when an attached target goes away: netlink
// RTM_DELLINK for interfaces, inotify IN_DELETE on a cgroup's parent
// directory for cgroups (cgroupfs reports a removed directory to its
// parent's watchers, not to the directory itself). Also passes on
// RTM_NEWLINK, so that new interfaces get the packet socket filter, and
// RTM_NEWADDR/RTM_DELADDR, so that DNS never opens this host's addresses,
// and default routes (RTM_NEWROUTE), so that an attached interface that
// becomes an uplink is reported, and deleted clsact qdiscs and TC filters
// (RTM_DELQDISC, RTM_DELTFILTER, RTM_DELCHAIN), so that ours are put back.
// Pins and the state file another program removes (inotify) are put back
// too.
// A cgroup's cgroup.events (inotify IN_MODIFY: a process came, or all
// left) tells the manager to look where its workload sends from, then and
// a few times in the seconds after (a runtime's first process may enter
// the container's namespace only after it joined the cgroup); so does a
// socket call the BPF hooks report from a namespace other than its
// attachment's (a process that entered one later).
// One thread sleeps in poll() until an event comes, so an idle host costs
// no CPU.
#pragma once

#include <sys/inotify.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/attachment_manager.h"
#include "daemon/logger.h"

namespace sebpf::daemon {

class TargetWatcher {
 public:
  static Result<std::unique_ptr<TargetWatcher>> start(AttachmentManager& manager, Logger& log);
  ~TargetWatcher();
  TargetWatcher(const TargetWatcher&) = delete;
  TargetWatcher& operator=(const TargetWatcher&) = delete;

  // Watches a cgroup attached: its parent directory, its cgroup.events,
  // and the directory of its link pins. When the cgroup is already gone by
  // then, tells the manager at once (so no removal is missed); so too for
  // a pin, and for a process come since the attach.
  void watch_cgroup(const std::string& path, uint64_t cgroup_id);

 private:
  // A directory of the datapath's pins (bpffs reports removals there as
  // any filesystem does).
  struct PinWatch {
    enum class Kind { kRoot, kMaps, kLinks, kCgroupLinks } kind;
    uint64_t cgroup_id = 0;  // kCgroupLinks
  };
  // What one read of inotify events says was removed among the pins.
  struct PinRemovals {
    bool all = false;
    bool maps = false;
    std::set<uint64_t> cgroups;
    bool any() const { return all || maps || !cgroups.empty(); }
  };

  TargetWatcher(AttachmentManager& manager, Logger& log);
  void run();
  void read_netlink();
  void read_inotify();
  // Follows the workloads reported; false (logged) when the reports
  // cannot be read, and are read no more.
  bool read_netns_events();
  // Entries of a directory removed or moved away, and the directory.
  static constexpr uint32_t kRemovals = IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF;
  // An inotify watch for `events` on a directory; -1, logged as `failure`,
  // when it cannot be had.
  int watch_dir(const std::string& dir, uint32_t events, const char* failure);
  void watch_parent(const std::string& cgroup_path);
  void watch_population(const std::string& cgroup_path);
  // Whether the event was on a cgroup.events; if so, passed on, and the
  // cgroup's looks again scheduled.
  bool note_population_event(const ::inotify_event& ev);
  // Looks again at the cgroups whose time has come; how long poll() may
  // sleep until the next (-1: none due).
  int look_again();
  void watch_pins(const std::string& dir, PinWatch what);
  // Watches the pin directories there are now (again, after a removal).
  void watch_all_pins();
  // Whether the event was on a pin directory; if so, what it removed.
  bool note_pin_event(const ::inotify_event& ev, PinRemovals& removed);
  void restore(const PinRemovals& removed);
  // Watches the state file's directory (again, after a removal).
  void watch_state_dir();
  // Whether an event on that directory removed one of its files (or the
  // directory).
  bool removed_state_file(const ::inotify_event& ev);

  AttachmentManager& manager_;
  Logger& log_;
  UniqueFd netlink_fd_;
  UniqueFd inotify_fd_;
  UniqueFd stop_fd_;
  // Null when the reports cannot be read (logged): the sweep follows.
  std::unique_ptr<datapath::NetnsEvents> netns_events_;
  std::mutex mu_;
  std::map<int, std::string> watched_dirs_;  // inotify wd -> cgroup parent directory
  std::map<int, std::string> populations_;   // inotify wd -> cgroup (its cgroup.events)
  // Cgroups whose population changed lately: when to look again, and how
  // many looks have been. Used by the watcher's thread alone.
  struct LookAgain {
    std::chrono::steady_clock::time_point at;
    size_t done = 0;
  };
  std::map<std::string, LookAgain> look_again_;
  std::map<int, PinWatch> pin_watches_;  // inotify wd -> pin directory
  // The state directory and the names of the daemon's files in it; its
  // watch, used by the watcher's thread alone (-1: none).
  std::string state_dir_;
  std::set<std::string, std::less<>> state_names_;
  int state_watch_ = -1;
  std::thread thread_;
};

}  // namespace sebpf::daemon
