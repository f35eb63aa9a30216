#include "daemon/target_watcher.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <optional>
#include <set>

#include "common/netlink_messages.h"
#include "daemon/uplink_check.h"

namespace sebpf::daemon {
namespace {

// When to look again at a cgroup after its population changed, each after
// the one before: a runtime's first process joins the cgroup, then enters
// the container's namespace, and exits once the container's own process
// runs, within milliseconds as a rule (the sweep catches what is later).
constexpr std::chrono::milliseconds kLookAgainAfter[] = {std::chrono::milliseconds(100),
                                                         std::chrono::milliseconds(500),
                                                         std::chrono::milliseconds(2000)};

// The interface on which an event may have taken a TC filter of ours
// away: its clsact qdisc, a filter or a filter chain deleted, or a filter
// that runs another's program added (in our filter's place, with `tc
// filter replace`, it runs instead of ours; at our priority, before ours).
// None for other events, for our own attaches, and for shared filter
// blocks (which name no interface, and which we never use).
std::optional<uint32_t> tc_change_interface(const nlmsghdr& h, const AttachmentManager& manager) {
  if (h.nlmsg_type != RTM_DELQDISC && h.nlmsg_type != RTM_DELTFILTER &&
      h.nlmsg_type != RTM_DELCHAIN && h.nlmsg_type != RTM_NEWTFILTER) {
    return std::nullopt;
  }
  const auto* tc = netlink_payload<tcmsg>(h);
  if (tc == nullptr || tc->tcm_ifindex <= 0) return std::nullopt;
  if (h.nlmsg_type == RTM_NEWTFILTER && manager.runs_our_tc_program(tc_filter_program_id(h))) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(tc->tcm_ifindex);
}

}  // namespace

TargetWatcher::TargetWatcher(AttachmentManager& manager, Logger& log)
    : manager_(manager),
      log_(log),
      state_dir_(std::filesystem::path(manager.state_files().front()).parent_path().string()) {
  for (const std::string& file : manager.state_files()) {
    state_names_.insert(std::filesystem::path(file).filename().string());
  }
}

Result<std::unique_ptr<TargetWatcher>> TargetWatcher::start(AttachmentManager& manager,
                                                            Logger& log) {
  std::unique_ptr<TargetWatcher> self(new TargetWatcher(manager, log));
  self->netlink_fd_.reset(
      socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (!self->netlink_fd_) return Error::from_errno(errno, "open a netlink socket");
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
                   RTMGRP_IPV6_ROUTE | RTMGRP_TC;
  if (bind(self->netlink_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Error::from_errno(errno, "subscribe to link, address, route and TC events");
  }
  self->inotify_fd_.reset(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!self->inotify_fd_) return Error::from_errno(errno, "inotify_init1");
  self->stop_fd_.reset(eventfd(0, EFD_CLOEXEC));
  if (!self->stop_fd_) return Error::from_errno(errno, "eventfd");
  auto netns_events = manager.open_netns_events();
  if (netns_events.ok()) {
    self->netns_events_ = std::move(*netns_events);
  } else {
    log.warning("netns_reports_unread",
                {{"error", netns_events.error().message()},
                 {"impact",
                  "a process that enters another network namespace after joining its attached "
                  "cgroup is followed at the next sweep, not at its first socket call"}});
  }
  self->thread_ = std::thread([raw = self.get()] { raw->run(); });
  // Subscribed first, checked second: a target that went away before we
  // listened is found by the check, one that goes after by an event.
  manager.check_all_targets();
  manager.on_host_addresses_changed();
  for (const std::string& path : manager.cgroup_targets()) {
    self->watch_parent(path);
    self->watch_population(path);
  }
  return self;
}

TargetWatcher::~TargetWatcher() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (write(stop_fd_.get(), &one, sizeof one) < 0) {
      log_.error("watcher_stop_failed", {{"error", errno_text(errno)}});
    }
    thread_.join();
  }
}

void TargetWatcher::watch_cgroup(const std::string& path, uint64_t cgroup_id) {
  watch_parent(path);
  watch_population(path);
  const std::string links = manager_.cgroup_links_dir(cgroup_id);
  if (links.empty()) return;
  watch_pins(links, {PinWatch::Kind::kCgroupLinks, cgroup_id});
  manager_.on_link_pins_removed(cgroup_id);
}

int TargetWatcher::watch_dir(const std::string& dir, uint32_t events, const char* failure) {
  const int wd = inotify_add_watch(inotify_fd_.get(), dir.c_str(), events | IN_ONLYDIR);
  if (wd < 0) log_.warning(failure, {{"dir", dir}, {"error", errno_text(errno)}});
  return wd;
}

void TargetWatcher::watch_pins(const std::string& dir, PinWatch what) {
  std::lock_guard lock(mu_);
  const int wd = watch_dir(dir, kRemovals, "pin_watch_failed");
  if (wd >= 0) pin_watches_[wd] = what;
}

void TargetWatcher::watch_all_pins() {
  const AttachmentManager::PinnedDirs dirs = manager_.pinned_dirs();
  if (dirs.top.root.empty()) return;
  watch_pins(dirs.top.root, {PinWatch::Kind::kRoot});
  watch_pins(dirs.top.maps, {PinWatch::Kind::kMaps});
  watch_pins(dirs.top.links, {PinWatch::Kind::kLinks});
  for (const auto& [id, dir] : dirs.cgroup_links) {
    watch_pins(dir, {PinWatch::Kind::kCgroupLinks, id});
  }
}

bool TargetWatcher::note_pin_event(const inotify_event& ev, PinRemovals& removed) {
  std::lock_guard lock(mu_);
  auto it = pin_watches_.find(ev.wd);
  if (it == pin_watches_.end()) return false;
  const PinWatch what = it->second;
  if (ev.mask & IN_IGNORED) {  // the directory is gone, or was unwatched
    pin_watches_.erase(it);
    return true;
  }
  if (ev.mask & IN_UNMOUNT) {  // the bpffs went, and every pin with it
    removed.all = true;
    return true;
  }
  const bool self = (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
  const std::string name = ev.len > 0 ? ev.name : "";
  switch (what.kind) {
    case PinWatch::Kind::kRoot:
      if (self || name == "maps" || name == "links") removed.all = true;
      break;
    case PinWatch::Kind::kMaps:
      removed.maps = true;
      break;
    case PinWatch::Kind::kLinks:
      if (self) {
        removed.all = true;
      } else if (name.rfind("cgroup-", 0) == 0) {
        removed.cgroups.insert(std::strtoull(name.c_str() + 7, nullptr, 10));
      }
      break;
    case PinWatch::Kind::kCgroupLinks:
      removed.cgroups.insert(what.cgroup_id);
      break;
  }
  return true;
}

void TargetWatcher::restore(const PinRemovals& removed) {
  if (removed.all || removed.maps) {
    if (removed.all) {
      manager_.restore_all_pins();
    } else {
      manager_.on_map_pins_removed();
    }
    watch_all_pins();  // directories made again get new watches
  }
  if (removed.all) return;
  for (const uint64_t id : removed.cgroups) {
    manager_.on_link_pins_removed(id);
    // Made again if the cgroup is attached; gone with a detach of ours
    // (one call per detached cgroup: watching all again here would cost
    // each detach a system call per attachment).
    const std::string dir = manager_.cgroup_links_dir(id);
    std::error_code ec;
    if (std::filesystem::is_directory(dir, ec)) {
      watch_pins(dir, {PinWatch::Kind::kCgroupLinks, id});
    }
  }
}

void TargetWatcher::watch_state_dir() {
  const int wd = watch_dir(state_dir_, kRemovals, "state_watch_failed");
  if (wd < 0) return;
  // A directory moved away keeps its watch: the one at the path counts.
  if (state_watch_ >= 0 && state_watch_ != wd) inotify_rm_watch(inotify_fd_.get(), state_watch_);
  state_watch_ = wd;
}

bool TargetWatcher::removed_state_file(const inotify_event& ev) {
  if (ev.mask & IN_IGNORED) {  // the directory is gone: watched again once made
    state_watch_ = -1;
    return true;
  }
  if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) return true;
  // Our own writes rename a temporary file over one (IN_MOVED_FROM of the
  // temporary's name): not a removal.
  return ev.len > 0 && state_names_.contains(ev.name);
}

void TargetWatcher::watch_parent(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  {
    std::lock_guard lock(mu_);
    const int wd = watch_dir(parent, IN_DELETE | IN_MOVED_FROM, "cgroup_watch_failed");
    if (wd >= 0) watched_dirs_[wd] = parent;
  }
  std::error_code ec;  // an error reads as gone: the manager confirms by the cgroup's id
  if (!std::filesystem::exists(path, ec)) manager_.on_cgroup_removed(path);
}

void TargetWatcher::watch_population(const std::string& cgroup_path) {
  {
    std::lock_guard lock(mu_);
    const std::string events = cgroup_path + "/cgroup.events";
    const int wd = inotify_add_watch(inotify_fd_.get(), events.c_str(), IN_MODIFY);
    if (wd >= 0) {
      populations_[wd] = cgroup_path;
    } else if (errno != ENOENT) {  // removed meanwhile: its parent's watch tells
      log_.warning("cgroup_events_watch_failed",
                   {{"file", events},
                    {"error", errno_text(errno)},
                    {"impact",
                     "a workload that comes from another network namespace is "
                     "served there from the next sweep, not at once"}});
    }
  }
  // Watched first, looked at second: a process that came before is found
  // now, one that comes after by an event.
  manager_.follow_workload_netns(cgroup_path);
}

bool TargetWatcher::note_population_event(const inotify_event& ev) {
  std::string cgroup;
  {
    std::lock_guard lock(mu_);
    auto it = populations_.find(ev.wd);
    if (it == populations_.end()) return false;
    if (ev.mask & IN_IGNORED) {  // the cgroup is gone
      look_again_.erase(it->second);
      populations_.erase(it);
      return true;
    }
    cgroup = it->second;
  }
  if (ev.mask & IN_MODIFY) {
    manager_.follow_workload_netns(cgroup);
    look_again_[cgroup] = {std::chrono::steady_clock::now() + kLookAgainAfter[0], 0};
  }
  return true;
}

int TargetWatcher::look_again() {
  const auto now = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> next;
  for (auto it = look_again_.begin(); it != look_again_.end();) {
    LookAgain& when = it->second;
    if (when.at <= now) {
      manager_.follow_workload_netns(it->first);
      if (++when.done == std::size(kLookAgainAfter)) {
        it = look_again_.erase(it);
        continue;
      }
      when.at = now + kLookAgainAfter[when.done];
    }
    if (!next || when.at < *next) next = when.at;
    ++it;
  }
  if (!next) return -1;
  // Rounded up: woken early, poll() would come back to nothing due.
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
  return static_cast<int>(std::max<int64_t>(wait.count(), 0));
}

void TargetWatcher::run() {
  // Subscribed first, checked second, as in start(); adoption has just
  // put every filter and link in place, so this finds what was removed
  // since. It runs here, in the background, and takes the manager's lock
  // for one target at a time: with 1,024 cgroups attached, the look at
  // their 12,288 link pins takes 20-25 ms, which the start does not wait
  // for.
  manager_.restore_all_tc_filters();
  watch_all_pins();
  manager_.restore_all_pins();
  watch_state_dir();
  manager_.restore_state_files();
  // A negative fd (no reports to read) is skipped by poll().
  pollfd fds[4] = {{netlink_fd_.get(), POLLIN, 0},
                   {inotify_fd_.get(), POLLIN, 0},
                   {stop_fd_.get(), POLLIN, 0},
                   {netns_events_ ? netns_events_->fd() : -1, POLLIN, 0}};
  int timeout_ms = -1;
  while (true) {
    const int ready = poll(fds, 4, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      log_.error("watcher_failed", {{"error", errno_text(errno)}});
      return;
    }
    if (ready > 0) {
      if (fds[2].revents != 0) return;
      if (fds[0].revents != 0) read_netlink();
      if (fds[1].revents != 0) read_inotify();
      if (fds[3].revents != 0 && !read_netns_events()) fds[3].fd = -1;
    }
    timeout_ms = look_again();
  }
}

bool TargetWatcher::read_netns_events() {
  auto reported = netns_events_->take();
  if (!reported.ok()) {
    // Left unread, the buffer would keep poll() awake: read no more, and
    // let the sweep follow.
    log_.error("netns_reports_failed",
               {{"error", reported.error().message()},
                {"impact",
                 "workloads that enter another network namespace are followed at the "
                 "next sweep from now on"}});
    netns_events_.reset();
    return false;
  }
  manager_.follow_reported_workloads(*reported);
  return true;
}

void TargetWatcher::read_netlink() {
  alignas(nlmsghdr) char buf[32768];
  while (true) {
    const ssize_t n = recv(netlink_fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      if (errno == ENOBUFS) {
        // The kernel dropped events: look at every target instead.
        log_.warning("link_events_lost", {});
        manager_.check_all_targets();
        manager_.on_host_addresses_changed();
        manager_.report_uplinks();
        manager_.restore_all_tc_filters();
        continue;
      }
      log_.error("link_events_failed", {{"error", errno_text(errno)}});
      return;
    }
    size_t offset = 0;
    bool addresses_changed = false;
    std::set<uint32_t> tc_changes;
    while (const nlmsghdr* h = next_netlink_message({buf, static_cast<size_t>(n)}, offset)) {
      if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) addresses_changed = true;
      if (const auto ifindex = tc_change_interface(*h, manager_)) tc_changes.insert(*ifindex);
      for (const unsigned ifindex : default_route_interfaces(*h))
        manager_.on_default_route(ifindex);
      const bool link_event = h->nlmsg_type == RTM_DELLINK || h->nlmsg_type == RTM_NEWLINK;
      const auto* info = link_event ? netlink_payload<ifinfomsg>(*h) : nullptr;
      if (info != nullptr) {
        const auto ifindex = static_cast<uint32_t>(info->ifi_index);
        if (h->nlmsg_type == RTM_DELLINK) {
          manager_.on_interface_removed(ifindex, link_moved_to_another_namespace(*h));
        } else {
          // Also sent when a link changes (up, down, renamed); guarding
          // again replaces our filter in place, which costs little.
          manager_.on_interface_added(ifindex);
        }
      }
    }
    // Once per datagram: reading them all again is what a change costs.
    if (addresses_changed) manager_.on_host_addresses_changed();
    // A qdisc deletion comes with one event per filter it held.
    for (const uint32_t ifindex : tc_changes) manager_.on_tc_filters_changed(ifindex);
  }
}

void TargetWatcher::read_inotify() {
  alignas(inotify_event) char buf[16384];
  while (true) {
    const ssize_t n = read(inotify_fd_.get(), buf, sizeof buf);
    if (n <= 0) return;
    PinRemovals pins;
    bool state_removed = false;
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        log_.warning("inotify_events_lost", {});
        manager_.check_all_targets();
        manager_.follow_all_workload_netns();
        pins.all = true;
        state_removed = true;
        continue;
      }
      if (ev->wd == state_watch_) {
        state_removed = removed_state_file(*ev) || state_removed;
        continue;
      }
      if (note_pin_event(*ev, pins)) continue;
      if (note_population_event(*ev)) continue;
      std::string dir;
      {
        std::lock_guard lock(mu_);
        if (ev->mask & IN_IGNORED) {
          watched_dirs_.erase(ev->wd);
          continue;
        }
        auto it = watched_dirs_.find(ev->wd);
        if (it == watched_dirs_.end() || ev->len == 0) continue;
        dir = it->second;
      }
      if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) manager_.on_cgroup_removed(dir + "/" + ev->name);
    }
    if (pins.any()) restore(pins);
    if (state_removed) {
      manager_.restore_state_files();
      watch_state_dir();
    }
  }
}

}  // namespace sebpf::daemon
