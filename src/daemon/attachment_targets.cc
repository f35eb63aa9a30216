// AttachmentManager and its targets' lives: an interface added, renamed,
// moved or deleted, a cgroup removed (the attachment ended, and why kept)
// or its workload found in another network namespace, and targets that
// became unsafe to enforce on (an uplink, the daemon's own cgroup),
// reported.

#include <net/if.h>
#include <unistd.h>

#include <algorithm>

#include "daemon/attachment_kernel_state.h"
#include "daemon/attachment_manager.h"
#include "daemon/interface_addresses.h"
#include "daemon/target_resolver.h"
#include "daemon/uplink_check.h"

namespace sebpf::daemon {

using datapath::TargetKind;

void AttachmentManager::drop_locked(size_t index, const std::string& reason) {
  const AttachmentRecord record = state_.records[index];
  state_.records.erase(state_.records.begin() + static_cast<std::ptrdiff_t>(index));
  state_.note_ended(record, reason);
  auto saved = save_locked();
  auto status = dp_->detach(record.key);
  forget_locked(record);
  log_.info("target_removed", {{"id", record.id()},
                               {"target", record.target},
                               {"reason", reason},
                               {"state", saved.ok() ? "saved" : saved.error().message()},
                               {"kernel", status.ok() ? "detached" : status.error().message()}});
}

void AttachmentManager::on_interface_added(uint32_t ifindex) {
  std::lock_guard lock(mu_);
  for (AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface || r.key.id != ifindex) continue;
    const bool renamed = follow_interface_name_locked(r);
    if (follow_dns_device_locked(r) || renamed) save_or_log_locked();
    break;
  }
  if (!dp_->guards_own_namespace()) return;
  if (auto guarded = dp_->guard_packet_sockets_on(ifindex); !guarded.ok()) {
    log_.error("packet_socket_guard_failed",
               {{"ifindex", std::to_string(ifindex)}, {"error", guarded.error().message()}});
  }
}

bool AttachmentManager::follow_interface_name_locked(AttachmentRecord& record) {
  char name[IF_NAMESIZE];
  if (record.kind != TargetKind::kInterface ||
      if_indextoname(static_cast<unsigned>(record.key.id), name) == nullptr ||
      record.target == name) {
    return false;
  }
  log_.info("attachment_target_renamed",
            {{"id", record.id()}, {"from", record.target}, {"to", name}});
  record.target = name;
  return true;
}

void AttachmentManager::on_interface_removed(uint32_t ifindex, bool moved_away) {
  std::lock_guard lock(mu_);
  dp_->forget_interface(ifindex);
  for (size_t i = 0; i < state_.records.size(); ++i) {
    const AttachmentRecord& r = state_.records[i];
    if (r.kind != TargetKind::kInterface || r.key.id != ifindex || !kernel_target_gone(r)) {
      continue;
    }
    if (!moved_away) {
      drop_locked(i, "interface deleted");
      return;
    }
    // Unlike a deletion, the device still carries its guest's traffic.
    const std::string id = r.id();
    const std::string target = r.target;
    drop_locked(i, "interface moved to another network namespace");
    log_.warning("moved_interface_not_enforced",
                 {{"id", id},
                  {"target", target},
                  {"detail",
                   "the kernel takes TC filters off a device it moves, and the daemon "
                   "attaches interfaces of its own network namespace only: no policy is "
                   "enforced on this device until it is moved back and attached again"}});
    return;
  }
}

void AttachmentManager::on_cgroup_removed(const std::string& path) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < state_.records.size(); ++i) {
    const AttachmentRecord& r = state_.records[i];
    if (r.kind == TargetKind::kCgroup && r.target == path && kernel_target_gone(r)) {
      drop_locked(i, "cgroup removed");
      return;
    }
  }
}

void AttachmentManager::follow_workload_netns(const std::string& cgroup_path) {
  std::lock_guard lock(mu_);
  for (AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kCgroup || r.target != cgroup_path) continue;
    follow_workload_netns_locked(r);
    return;
  }
}

void AttachmentManager::follow_all_workload_netns() {
  for (const std::string& path : cgroup_targets()) follow_workload_netns(path);
}

Result<std::unique_ptr<datapath::NetnsEvents>> AttachmentManager::open_netns_events() const {
  SEBPF_ASSIGN_OR_RETURN(UniqueFd ring, dp_->netns_events_map());
  return datapath::NetnsEvents::open(std::move(ring));
}

void AttachmentManager::follow_reported_workloads(const std::set<uint64_t>& cgroup_ids) {
  for (const uint64_t id : cgroup_ids) {
    std::lock_guard lock(mu_);
    for (AttachmentRecord& r : state_.records) {
      if (r.kind != TargetKind::kCgroup || r.key.id != id) continue;
      follow_workload_netns_locked(r);
      break;
    }
  }
}

void AttachmentManager::follow_workload_netns_locked(AttachmentRecord& record) {
  auto found = netns_of_cgroup(record.target);
  if (!found.ok()) {
    // Looked at again at the next event or sweep; meanwhile it stays
    // where it was (never taken for ours: that would be a guess). Its
    // processes exiting as they were looked at (a container stopping) is
    // no fault; a namespace the daemon may not open is.
    const bool passing = found.error().code() == Errc::kUnavailable;
    log_.log(
        passing ? LogLevel::kInfo : LogLevel::kError, "workload_netns_unknown",
        {{"id", record.id()},
         {"target", record.target},
         {"error", found.error().message()},
         {"impact", "its DNS endpoint and packet socket guard stay in the namespace they are in"}});
    return;
  }
  // No process: nothing sends, and the next to come tells where.
  if (found->where == CgroupNetns::Where::kEmpty) return;
  const bool foreign = found->where == CgroupNetns::Where::kForeign;
  const bool elsewhere = found->inode != record.guarded_netns;
  const bool gains_address =
      !elsewhere && !record.endpoint_left_behind && endpoint_lacks_ipv6_locked(record) &&
      namespace_has_ipv6_address("/proc/" + std::to_string(found->thread) + "/net/if_inet6",
                                 *record.dns.v6);
  if (!elsewhere && !record.endpoint_left_behind && !gains_address) return;
  const GuardLeft left{record.guarded_netns, record.target};
  const int netns_fd = foreign ? found->fd.get() : -1;
  // The guard first: the workload's packet sockets are held before its
  // DNS is served there. Failing it, the endpoint still moves (DNS lets it
  // reach only what its policy allows), and the next look guards again.
  if (elsewhere) {
    if (auto guarded = guard_packet_sockets_locked(record, netns_fd); !guarded.ok()) {
      log_.error("packet_socket_guard_failed",
                 {{"id", record.id()}, {"error", guarded.error().message()}});
    }
  }
  auto moved = open_dns_endpoint_locked(record, netns_fd, EndpointChange::kMove);
  if (gains_address) {
    // The same namespace: the sockets it has are kept, and only the new
    // address's are made. Failing that (its port taken there, say), it
    // serves on without it, and the next look tries again.
    if (!moved.ok()) {
      log_.warning("dns_endpoint_address_not_added",
                   {{"id", record.id()},
                    {"target", record.target},
                    {"ipv6", record.dns.v6->to_string()},
                    {"error", moved.error().message()},
                    {"impact", "DNS over IPv6 fails (closed) until the next look binds it"}});
    } else if (!endpoint_lacks_ipv6_locked(record)) {
      log_.info(
          "dns_endpoint_address_added",
          {{"id", record.id()}, {"target", record.target}, {"ipv6", record.dns.v6->to_string()}});
    }
    return;
  }
  // Failing the move (its port held in that namespace, say), the old
  // endpoint serves on, where the workload no longer asks, until a look
  // (the next event or sweep) moves it.
  record.endpoint_left_behind = !moved.ok();
  if (!moved.ok()) log_endpoint_failure_locked(record, moved.error());
  if (elsewhere) release_packet_socket_guard_locked(&left);
  log_.info("workload_netns_followed",
            {{"id", record.id()},
             {"target", record.target},
             {"netns", foreign ? "the workload's own" : "host"},
             {"dns_endpoint", moved.ok() ? "moved" : "not moved: tried again at the next look"}});
}

bool AttachmentManager::endpoint_lacks_ipv6_locked(const AttachmentRecord& record) const {
  if (dns_proxy_ == nullptr || !record.dns.v6) return false;
  const auto served = dns_proxy_->served_addresses(record.number);
  return std::none_of(served.begin(), served.end(),
                      [&](const net::SocketAddress& a) { return a.address() == *record.dns.v6; });
}

void AttachmentManager::check_all_targets() {
  std::lock_guard lock(mu_);
  for (size_t i = state_.records.size(); i-- > 0;) {
    const AttachmentRecord& r = state_.records[i];
    if (kernel_target_gone(r)) {
      drop_locked(i, r.kind == TargetKind::kCgroup ? "cgroup removed" : "interface deleted");
    }
  }
}

void AttachmentManager::log_unsafe_target(const AttachmentRecord& r, const Error& why) {
  log_.error("attachment_target_unsafe",
             {{"id", r.id()}, {"target", r.target}, {"detail", why.message()}});
}

void AttachmentManager::on_default_route(uint32_t ifindex) {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kInterface && r.key.id == ifindex) {
      log_unsafe_target(r, uplink_error(r.target));
    }
  }
}

void AttachmentManager::report_unsafe_targets(const std::string& cgroup_mount) {
  report_uplinks();
  report_daemon_cgroup(cgroup_mount);
}

void AttachmentManager::report_uplinks() {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface) continue;
    if (Status unsafe = refuse_uplink(r.target); !unsafe.ok()) log_unsafe_target(r, unsafe.error());
  }
}

void AttachmentManager::report_daemon_cgroup(const std::string& cgroup_mount) {
  const auto own = cgroup_path_of_pid(getpid(), cgroup_mount);
  if (!own.ok()) return;
  std::lock_guard lock(mu_);
  if (own_cgroup_seen_ == *own) return;
  own_cgroup_seen_ = *own;
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kCgroup) continue;
    if (Status unsafe = refuse_daemon_cgroup(r.target, *own, "target"); !unsafe.ok()) {
      log_unsafe_target(r, unsafe.error());
    }
  }
}

}  // namespace sebpf::daemon
