#include "daemon/attachment_manager.h"

#include <net/if.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "daemon/attachment_kernel_state.h"
#include "daemon/target_resolver.h"
#include "datapath/netns.h"
#include "state/state_file.h"

namespace sebpf::daemon {

using datapath::Mode;
using datapath::TargetKind;

namespace {

// The built-in policy when neither the request nor a policy file gives one.
Policy builtin_default_policy() { return Policy{}; }

bool target_exists(const AttachmentRecord& r) {
  if (r.kind == TargetKind::kInterface) return if_nametoindex(r.target.c_str()) != 0;
  struct stat st {};
  return stat(r.target.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// "198.51.100.1,2001:db8::1 port 5300", for a log field; "none".
std::string endpoint_text(const datapath::DnsEndpoint& dns) {
  if (!dns.v4 && !dns.v6) return "none";
  std::string addresses = dns.v4 ? dns.v4->to_string() : "";
  if (dns.v6) addresses += (addresses.empty() ? "" : ",") + dns.v6->to_string();
  return addresses + " port " + std::to_string(dns.port);
}

}  // namespace

AttachmentManager::AttachmentManager(const DaemonConfig& config, policy::PolicyFile policies,
                                     Logger& log, std::unique_ptr<datapath::Datapath> dp)
    : config_(config),
      configured_never_learn_(config_.dns_never_learn),
      never_learn_(config_.dns_never_learn),
      policies_(std::move(policies)),
      log_(log),
      dp_(std::move(dp)) {}

AttachmentManager::~AttachmentManager() = default;

Result<std::unique_ptr<AttachmentManager>> AttachmentManager::open(const DaemonConfig& config,
                                                                   policy::PolicyFile policies,
                                                                   Logger& log) {
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) {
    return Error(Errc::kFailedPrecondition,
                 "create state directory " + config.state_dir + ": " + ec.message());
  }
  // Read the state before touching the kernel: a damaged file stops us
  // while the pinned enforcement is still exactly as it was.
  DaemonStateData state;
  auto bytes = state::read_state_file(config.state_file());
  if (bytes.ok()) {
    auto decoded = decode_state(*bytes);
    if (!decoded.ok()) return decoded.error().wrap(config.state_file());
    state = std::move(*decoded);
  } else if (bytes.error().code() != Errc::kNotFound) {
    return Error(bytes.error().code(),
                 bytes.error().message() +
                     ". superebpfd will not guess what it held: the kernel keeps enforcing what "
                     "it has. Restore the file, or move it aside to start afresh (every "
                     "attachment is then detached)");
  }

  datapath::Config dp_config = config.datapath;
  dp_config.dns_port_first = config.dns_port_first;
  dp_config.dns_port_last = config.dns_port_last;
  SEBPF_ASSIGN_OR_RETURN(auto dp, datapath::Datapath::open(dp_config));
  for (const datapath::AdoptionNote& note : dp->adoption_notes()) {
    if (note.level == datapath::AdoptionNote::Level::kWarning) {
      log.warning("datapath_adoption", {{"note", note.text}});
    } else {
      log.info("datapath_adoption", {{"note", note.text}});
    }
  }
  log.info("datapath_open", {{"pin_dir", config.datapath.pin_dir},
                             {"adopted", dp->adopted() ? "true" : "false"},
                             {"programs", dp->programs_reused() ? "reused" : "loaded"}});
  if (!dp->netns_isolated_flows()) {
    log.warning("kernel_lacks_netns_cookie",
                {{"impact",
                  "reply flows of cgroup attachments are not kept per network namespace: a "
                  "workload able to forge packets in a namespace of its own (unprivileged user "
                  "namespaces) can open replies to any address; a newer kernel closes this"}});
  }
  std::unique_ptr<AttachmentManager> manager(
      new AttachmentManager(config, std::move(policies), log, std::move(dp)));
  manager->state_ = std::move(state);
  // Before reconciling, which re-applies learned hosts: none may be one of
  // ours (the watcher keeps the list current from here on).
  SEBPF_ASSIGN_OR_RETURN(const HostAddresses host_addresses, read_host_addresses());
  {
    std::lock_guard lock(manager->mu_);
    manager->set_host_addresses_locked(host_addresses.all);
    SEBPF_RETURN_IF_ERROR(manager->reconcile());
    manager->release_packet_socket_guard_locked(nullptr);
    manager->restore_teachers_locked();
    // A tap readdressed while the daemon was down.
    manager->follow_interface_addresses_locked(host_addresses.by_interface);
  }
  return manager;
}

void AttachmentManager::set_cgroup_attached_hook(
    std::function<void(const std::string&, uint64_t)> hook) {
  std::lock_guard lock(mu_);
  cgroup_hook_ = std::move(hook);
}

// Brings the kernel in line with the state file: adopted attachments get
// the stored policy (one atomic swap, so no gap), attachments whose target
// is back (after a reboot) are attached again, the rest are dropped, and
// kernel attachments nobody recorded are detached.
Status AttachmentManager::reconcile() {
  SEBPF_ASSIGN_OR_RETURN(auto kernel, dp_->attachments());
  auto in_kernel = [&](const AttachmentRecord& r) -> const datapath::Attachment* {
    auto it = std::find_if(kernel.begin(), kernel.end(), [&](const datapath::Attachment& a) {
      return a.key == r.key && a.serial == r.serial;
    });
    return it == kernel.end() ? nullptr : &*it;
  };
  // First let go of what nobody recorded (a crash between a kernel attach
  // and the state write), so that attaching again below cannot collide.
  for (const datapath::Attachment& a : kernel) {
    const bool recorded = std::any_of(
        state_.records.begin(), state_.records.end(),
        [&](const AttachmentRecord& r) { return a.key == r.key && a.serial == r.serial; });
    if (recorded) continue;
    auto status = dp_->detach(a.key);
    log_.warning("unrecorded_attachment_detached",
                 {{"key", datapath::to_string(a.key)},
                  {"result", status.ok() ? "detached" : status.error().message()}});
  }
  // Learned addresses live only in the kernel maps: read back (all in one
  // read) so that the policy applied below keeps them.
  auto kernel_rules = dp_->rules_of_all();
  if (!kernel_rules.ok()) {
    log_.error("kernel_rules_unread", {{"error", kernel_rules.error().message()},
                                       {"impact", "hosts learned before this start are dropped"}});
  }
  std::vector<AttachmentRecord> kept;
  for (AttachmentRecord& r : state_.records) {
    if (const datapath::Attachment* held = in_kernel(r)) {
      const std::vector<datapath::Rule>* rules = nullptr;
      if (kernel_rules.ok()) {
        if (auto it = kernel_rules->find(r.key); it != kernel_rules->end()) rules = &it->second;
      }
      if (rules != nullptr) {
        const auto boot_now = datapath::BootClock::now();
        for (const datapath::Rule& rule : *rules) {
          if (rule.learned && rule.expires && *rule.expires > boot_now) {
            learned_[r.number][rule.prefix.address()].until = *rule.expires;
          }
        }
      }
      auto applied = rules != nullptr ? apply_full_policy(r, HeldPolicy{held->mode, *rules})
                                      : apply_full_policy(r);
      if (!applied.ok()) {
        log_.error("restore_policy_failed", {{"id", r.id()}, {"error", applied.error().message()}});
      }
      // The kernel names the record's endpoint as the one resolver let
      // through. It may name another: a process stopped between moving an
      // endpoint and saving the record, or an earlier build, which kept
      // the last address of an interface left with none.
      if (const datapath::DnsEndpoint recorded = kernel_endpoint(r.dns); held->dns != recorded) {
        if (const Status set = dp_->set_dns_endpoint(r.key, recorded); !set.ok()) {
          log_.error("dns_endpoint_not_corrected", {{"id", r.id()},
                                                    {"target", r.target},
                                                    {"kernel_has", endpoint_text(held->dns)},
                                                    {"error", set.error().message()}});
        } else {
          log_.warning("dns_endpoint_corrected", {{"id", r.id()},
                                                  {"target", r.target},
                                                  {"kernel_had", endpoint_text(held->dns)},
                                                  {"now", endpoint_text(recorded)}});
        }
      }
      // The filters are in the kernel still, running the previous
      // process's program: replace them (and cover interfaces added
      // meanwhile).
      if (r.kind == TargetKind::kCgroup) {
        auto netns = workload_netns(r);
        auto guarded = netns.ok() ? guard_packet_sockets_locked(r, netns->get()) : netns.error();
        if (!guarded.ok()) {
          log_.error("packet_socket_guard_failed",
                     {{"id", r.id()}, {"error", guarded.error().message()}});
        }
      }
      follow_interface_name_locked(r);  // renamed while the daemon was down
      if (r.kind == TargetKind::kInterface) r.dns_device = dns_device_of(r.key.id);
      log_.info("attachment_adopted", {{"id", r.id()}, {"target", r.target}});
      kept.push_back(std::move(r));
      continue;
    }
    if (!target_exists(r)) {
      log_.warning("target_gone_while_down", {{"id", r.id()}, {"target", r.target}});
      state_.note_ended(r, "target removed while the daemon was not running");
      continue;
    }
    // The kernel does not hold it (after a reboot, or a crash mid-detach)
    // but the target exists: attach again, failing closed.
    auto again = attach_locked({r.kind, r.target, r.metadata, r.policy}, r.policy, r.number,
                               r.created, r.applied_policy, r.dns);
    if (!again.ok()) {
      log_.error("reattach_failed",
                 {{"id", r.id()}, {"target", r.target}, {"error", again.error().message()}});
      state_.note_ended(r, "could not attach again: " + again.error().message());
      continue;
    }
    log_.info("attachment_restored", {{"id", r.id()}, {"target", r.target}});
    kept.push_back(std::move(*again));
  }
  state_.records = std::move(kept);
  learners_.reset();
  return save_locked();
}

Result<AttachmentRecord> AttachmentManager::attach(const AttachSpec& spec) {
  std::function<void(const std::string&, uint64_t)> hook;
  AttachmentRecord record;
  int64_t kernel_us = 0;
  int64_t save_us = 0;
  {
    std::lock_guard lock(mu_);
    // An interface is the same by ifindex: it may have been renamed since
    // (and the watcher not told us yet).
    const uint32_t ifindex =
        spec.kind == TargetKind::kInterface ? if_nametoindex(spec.target.c_str()) : 0;
    for (AttachmentRecord& r : state_.records) {
      if (r.kind != spec.kind) continue;
      const bool same =
          spec.kind == TargetKind::kInterface ? r.key.id == ifindex : r.target == spec.target;
      if (!same) continue;
      if (follow_interface_name_locked(r)) save_or_log_locked();
      return Error(Errc::kAlreadyExists, spec.target + " is attached already as " + r.id());
    }
    std::string applied = "request";
    Policy policy;
    if (spec.policy) {
      policy = *spec.policy;
    } else if (auto selection = policies_.select(spec.metadata)) {
      applied = selection->name;
      policy = policy_from_spec(*selection->spec);
    } else {
      applied = "builtin-default";
      policy = builtin_default_policy();
    }
    if (auto fits = check_policy_bounds(Policy{}, policy, config_.policy_limits()); !fits.ok()) {
      return fits.error().wrap("attach " + spec.target);
    }
    const auto t0 = std::chrono::steady_clock::now();
    SEBPF_ASSIGN_OR_RETURN(record, attach_locked(spec, policy, state_.next_number, WallClock::now(),
                                                 applied, std::nullopt));
    const auto t1 = std::chrono::steady_clock::now();
    state_.next_number++;
    state_.records.push_back(record);
    learners_.reset();
    auto saved = save_locked();
    const auto t2 = std::chrono::steady_clock::now();
    kernel_us = std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
    save_us = std::chrono::duration_cast<std::chrono::microseconds>(t2 - t1).count();
    if (!saved.ok()) {
      state_.records.pop_back();
      (void)dp_->detach(record.key);
      forget_locked(record);
      return saved.error().wrap("attach " + record.target + " (undone)");
    }
    hook = cgroup_hook_;
  }
  log_.info("attached", {{"id", record.id()},
                         {"target", record.target},
                         {"policy", record.applied_policy},
                         {"dns_port", std::to_string(record.dns.port)},
                         {"kernel_us", std::to_string(kernel_us)},
                         {"state_us", std::to_string(save_us)}});
  if (hook && record.kind == TargetKind::kCgroup) hook(record.target, record.key.id);
  return record;
}

Result<AttachmentRecord> AttachmentManager::attach_locked(
    const AttachSpec& spec, const Policy& policy, uint64_t number, WallClock::time_point created,
    const std::string& applied_policy, std::optional<datapath::DnsEndpoint> dns) {
  AttachmentRecord r;
  r.number = number;
  r.kind = spec.kind;
  r.target = spec.target;
  r.metadata = spec.metadata;
  r.created = created;
  r.applied_policy = applied_policy;
  r.policy = policy;
  // Looked up once: the endpoint's device and the filters must be those of
  // one interface (a rename in between is caught after the attach).
  const uint32_t ifindex =
      spec.kind == TargetKind::kInterface ? if_nametoindex(spec.target.c_str()) : 0;
  if (spec.kind == TargetKind::kInterface) {
    r.dns_device = dns_device_of(ifindex);
    if (r.dns_device == 0) {
      return Error(Errc::kNotFound, "no network interface named \"" + spec.target + "\"");
    }
  }
  if (dns) {
    r.dns = *dns;
  } else {
    SEBPF_ASSIGN_OR_RETURN(r.dns.port, allocate_dns_port_locked());
    if (spec.kind == TargetKind::kCgroup) {
      r.dns.v4 = *net::IpAddress::parse(config_.dns_cgroup_ipv4);
      r.dns.v6 = *net::IpAddress::parse(config_.dns_cgroup_ipv6);
    } else {
      const datapath::DnsEndpoint own = endpoint_on({}, read_interface_addresses(r.dns_device));
      r.dns.v4 = own.v4;
      r.dns.v6 = own.v6;
    }
  }
  // Fail closed: a namespace that cannot be told is not taken for ours.
  SEBPF_ASSIGN_OR_RETURN(const UniqueFd netns, workload_netns(r));
  // The endpoint first: a port some other program holds is skipped for the
  // next one, before the kernel is told which port to let through.
  for (int attempt = 1;; ++attempt) {
    auto opened = open_dns_endpoint_locked(r, netns.get());
    if (opened.ok()) break;
    if (dns || opened.error().code() != Errc::kAlreadyExists || attempt == 16) {
      return opened.error().wrap("DNS endpoint of " + r.target);
    }
    log_.warning("dns_port_in_use",
                 {{"port", std::to_string(r.dns.port)}, {"detail", opened.error().message()}});
    SEBPF_ASSIGN_OR_RETURN(r.dns.port, allocate_dns_port_locked());
  }
  datapath::AttachOptions options;
  options.mode = r.policy.mode;
  options.rules = kernel_rules(r.policy, WallClock::now(), datapath::BootClock::now());
  // An interface with no address yet has its port reserved but nothing
  // for the kernel to allow until it has one.
  options.dns = kernel_endpoint(r.dns);
  options.direction = r.direction;
  auto attached = spec.kind == TargetKind::kCgroup ? dp_->attach_cgroup(spec.target, options)
                                                   : dp_->attach_interface(spec.target, options);
  if (!attached.ok()) {
    if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(r.number);
    return attached.error();
  }
  r.key = attached->key;
  r.serial = attached->serial;
  // From here a failure undoes the kernel attach and the endpoint.
  const auto undone = [&](Error error) {
    (void)dp_->detach(r.key);
    if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(r.number);
    return error;
  };
  if (spec.kind == TargetKind::kInterface && r.key.id != ifindex) {
    return undone(Error(Errc::kFailedPrecondition,
                        "interface \"" + spec.target +
                            "\" was renamed or replaced during the attach; attach it again"));
  }
  if (r.kind == TargetKind::kCgroup) {
    // Fail closed: a workload whose packet sockets nothing sees is not held.
    if (auto guarded = guard_packet_sockets_locked(r, netns.get()); !guarded.ok()) {
      return undone(guarded.error());
    }
  }
  return r;
}

Result<UniqueFd> AttachmentManager::workload_netns(const AttachmentRecord& record) {
  if (record.kind != TargetKind::kCgroup) return UniqueFd();
  SEBPF_ASSIGN_OR_RETURN(CgroupNetns found, netns_of_cgroup(record.target));
  return std::move(found.fd);
}

namespace {

constexpr const char* kOwnNetns = "/proc/self/ns/net";

}  // namespace

Status AttachmentManager::guard_packet_sockets_locked(AttachmentRecord& record, int netns_fd) {
  const bool ours = netns_fd < 0;
  struct stat st {};
  if (ours ? stat(kOwnNetns, &st) != 0 : fstat(netns_fd, &st) != 0) {
    return Error::from_errno(errno, "identify the network namespace of " + record.target);
  }
  // Our namespace is guarded once (it may hold thousands of interfaces);
  // interfaces added later get the filter from RTM_NEWLINK. A workload's
  // own namespace holds a few, and is guarded at each attach.
  if (!ours || !dp_->guards_own_namespace()) {
    if (auto guarded = dp_->guard_packet_sockets(netns_fd); !guarded.ok()) {
      return guarded.error().wrap("guard the packet sockets of " + record.target);
    }
  }
  record.guarded_netns = st.st_ino;
  // Without the watch, a process that enters another namespace later is
  // followed only at a sweep; the guard above stands either way.
  auto cookie = datapath::netns_cookie(netns_fd);
  const Status watched =
      cookie.ok() ? dp_->watch_workload_netns(record.key, *cookie) : Status(cookie.error());
  if (!watched.ok()) {
    log_.warning("workload_netns_unwatched",
                 {{"id", record.id()},
                  {"target", record.target},
                  {"error", watched.error().message()},
                  {"impact",
                   "a process of it that enters another network namespace is followed at the "
                   "next sweep, not at its first socket call"}});
  }
  return ok_status();
}

void AttachmentManager::release_packet_socket_guard_locked(const GuardLeft* left) {
  if (left != nullptr && left->netns == 0) return;
  struct stat own {};
  if (stat(kOwnNetns, &own) != 0) return;  // cannot tell who needs it: keep it
  const uint64_t netns = left == nullptr ? own.st_ino : left->netns;
  const bool ours = netns == own.st_ino;
  if (left != nullptr && ours && !dp_->guards_own_namespace()) return;
  // A cgroup attachment whose guard failed at start (guarded_netns 0) may
  // still rely on the earlier process's filters in ours: they stay.
  const bool needed =
      std::any_of(state_.records.begin(), state_.records.end(), [&](const AttachmentRecord& r) {
        return r.kind == TargetKind::kCgroup &&
               (r.guarded_netns == netns || (ours && r.guarded_netns == 0));
      });
  if (needed) return;
  UniqueFd theirs;
  if (!ours) {
    auto found = netns_of_cgroup(left->cgroup);
    if (!found.ok() || found->inode != netns || !found->fd) return;
    theirs = std::move(found->fd);
  }
  auto removed = dp_->unguard_packet_sockets(ours ? -1 : theirs.get());
  if (!removed.ok()) {
    log_.warning("packet_socket_filter_not_removed", {{"error", removed.error().message()}});
    return;
  }
  if (*removed > 0) {
    log_.info("packet_socket_filter_removed",
              {{"interfaces", std::to_string(*removed)},
               {"netns", ours ? "host" : "workload of " + left->cgroup},
               {"reason", "no cgroup attachment left in this network namespace"}});
  }
}

void AttachmentManager::forget_locked(const AttachmentRecord& gone) {
  const uint64_t number = gone.number;
  if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(number);
  learned_.erase(number);
  teachers_.erase(number);
  bookkeeping_.erase(number);
  policy_changed_locked(number);
  if (gone.kind == TargetKind::kCgroup) {
    const GuardLeft left{gone.guarded_netns, gone.target};
    release_packet_socket_guard_locked(&left);
  }
}

void AttachmentManager::policy_changed_locked(uint64_t number) {
  learnable_indexes_.erase(number);
  learners_.reset();
  {
    std::lock_guard cache_lock(name_policies_mu_);
    name_policies_.erase(number);
  }
  // After the erase: a loop that sees the new generation can only fetch
  // the new policy.
  name_policy_generation_.fetch_add(1, std::memory_order_release);
}

Status AttachmentManager::detach(uint64_t number) {
  std::lock_guard lock(mu_);
  const auto it = std::find_if(state_.records.begin(), state_.records.end(),
                               [&](const AttachmentRecord& r) { return r.number == number; });
  if (it == state_.records.end()) {
    return no_attachment_locked(number);
  }
  const AttachmentRecord record = *it;
  state_.records.erase(it);
  if (auto saved = save_locked(); !saved.ok()) {
    state_.records.push_back(record);
    return saved.error().wrap("detach " + record.id() + " (nothing changed)");
  }
  auto status = dp_->detach(record.key);
  forget_locked(record);
  log_.info("detached", {{"id", record.id()},
                         {"target", record.target},
                         {"kernel", status.ok() ? "detached" : status.error().message()}});
  // NotFound: the kernel had already let go (the target went away).
  if (!status.ok() && status.error().code() != Errc::kNotFound) {
    return status.error().wrap("detach " + record.id() +
                               " (forgotten; the kernel detach is retried at the next start)");
  }
  return ok_status();
}

AttachmentRecord* AttachmentManager::find_locked(uint64_t number) {
  for (AttachmentRecord& r : state_.records) {
    if (r.number == number) return &r;
  }
  return nullptr;
}

Result<AttachmentRecord> AttachmentManager::get(uint64_t number) const {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.number == number) return r;
  }
  return no_attachment_locked(number);
}

std::vector<AttachmentRecord> AttachmentManager::list() const {
  std::lock_guard lock(mu_);
  return state_.records;
}

std::vector<std::string> AttachmentManager::cgroup_targets() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kCgroup) out.push_back(r.target);
  }
  return out;
}

Result<AttachmentManager::Counters> AttachmentManager::counters(uint64_t number) const {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.number != number) continue;
    SEBPF_ASSIGN_OR_RETURN(datapath::Counters filter, dp_->counters(r.key));
    const auto kept = bookkeeping_.find(number);
    const auto hosts = learned_.find(number);
    const LearnedCounts learned{
        .not_learned = kept == bookkeeping_.end() ? 0 : kept->second.not_learned,
        .hosts = hosts == learned_.end() ? 0 : hosts->second.size(),
        .hosts_most = dns_mode_learns(r.policy.dns_mode) ? learned_room_locked().share() : 0,
        .no_room = kept == bookkeeping_.end() ? 0 : kept->second.no_room};
    return Counters{filter, dns_proxy_ ? dns_proxy_->counters(number) : std::nullopt, learned};
  }
  return no_attachment_locked(number);
}

Error AttachmentManager::no_attachment_locked(uint64_t number) const {
  std::string message = "no attachment " + attachment_id_to_api(number);
  if (const EndedAttachment* ended = state_.find_ended(number)) {
    message += ": the daemon detached it (" + ended->target + "): " + ended->reason;
  }
  return Error(Errc::kNotFound, message);
}

void AttachmentManager::sweep() {
  std::unique_lock lock(mu_);
  size_t dropped = 0;
  for (AttachmentRecord& r : state_.records) {
    if (const size_t expired = drop_expired(r.policy, WallClock::now()); expired > 0) {
      dropped += expired;
      policy_changed_locked(r.number);
    }
    if (auto it = learned_.find(r.number); it != learned_.end()) {
      prune_learned(it->second, learnable_index_locked(r), WallClock::now(),
                    datapath::BootClock::now());
      // Chains only expired hosts named are let go of too.
      if (auto chains = teachers_.find(r.number); chains != teachers_.end()) {
        chains->second.compact_if_sparse(it->second);
      }
    }
  }
  auto reclaimed = dp_->sweep();
  if (dropped > 0) save_or_log_locked();
  log_.debug("sweep", {{"expired_rules", std::to_string(dropped)},
                       {"reclaimed", reclaimed.ok() ? std::to_string(*reclaimed)
                                                    : reclaimed.error().message()}});
  // So that after a crash the next daemon still knows what taught the
  // hosts learned until the last sweep (those learned since, it does not:
  // it drops them at the first change that may refuse a name).
  if (teachers_changed_) save_teachers(lock);
}

Status AttachmentManager::shutdown(bool detach_all) {
  std::unique_lock lock(mu_);
  if (!detach_all) {
    // Removed after the watcher stopped: the next start must find it.
    restore_state_file_locked();
    // The learned hosts stay in the kernel: so that the next daemon can
    // still take back what a domain rule it is given refuses, it needs to
    // know what taught them. Not fatal: without it, that daemon drops the
    // hosts it knows nothing of at such a change.
    save_teachers(lock);
    log_.info("stopping", {{"enforcement", "left in the kernel"},
                           {"attachments", std::to_string(state_.records.size())}});
    return ok_status();
  }
  const size_t count = state_.records.size();
  state_.records.clear();
  SEBPF_RETURN_IF_ERROR(save_locked());
  SEBPF_RETURN_IF_ERROR(dp_->destroy());
  std::error_code ec;  // nothing learned is left for it to describe
  std::filesystem::remove(config_.learned_chains_file(), ec);
  log_.info("stopping", {{"enforcement", "removed"}, {"attachments", std::to_string(count)}});
  return ok_status();
}

Status AttachmentManager::save_locked() {
  return state::write_state_file(config_.state_file(), encode_state(state_));
}

void AttachmentManager::save_or_log_locked() {
  if (Status saved = save_locked(); !saved.ok()) {
    log_.error("state_save_failed", {{"error", saved.error().message()}});
  }
}

}  // namespace sebpf::daemon
