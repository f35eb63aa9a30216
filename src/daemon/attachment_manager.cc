#include "daemon/attachment_manager.h"

#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "daemon/target_resolver.h"
#include "daemon/uplink_check.h"
#include "datapath/rule_codec.h"
#include "datapath/system.h"
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

// Whether the kernel object we attached is gone (not just renamed).
bool kernel_target_gone(const AttachmentRecord& r) {
  if (r.kind == TargetKind::kCgroup) return !datapath::cgroup_exists(r.key.id);
  return !datapath::interface_exists(r.key.id);
}

// Whether the attachment's target is gone, or, for an interface, the
// device its endpoint is served on (itself or its bridge): the link's
// event, next, detaches the attachment or moves the endpoint.
bool endpoint_device_gone(const AttachmentRecord& r) {
  return kernel_target_gone(r) ||
         (r.kind == TargetKind::kInterface && !datapath::interface_exists(r.dns_device));
}

// Whether an address an interface's endpoint was to be served on has left
// its device (flushed, or an IPv6 address gone with the link going down):
// that address's event, next, moves the endpoint.
bool endpoint_address_gone(const AttachmentRecord& r) {
  if (r.kind != TargetKind::kInterface) return false;
  const std::vector<net::IpAddress> now = read_interface_addresses(r.dns_device);
  const auto gone = [&](const std::optional<net::IpAddress>& address) {
    return address && std::find(now.begin(), now.end(), *address) == now.end();
  };
  return gone(r.dns.v4) || gone(r.dns.v6);
}

// What the kernel is told of an endpoint: none while it has no address. A
// port alone names no server to let a guest's DNS through to, and the
// address an interface had would be routed on to whoever has it now.
datapath::DnsEndpoint kernel_endpoint(const datapath::DnsEndpoint& dns) {
  return dns.v4 || dns.v6 ? dns : datapath::DnsEndpoint{};
}

// "198.51.100.1,2001:db8::1 port 5300", for a log field; "none".
std::string endpoint_text(const datapath::DnsEndpoint& dns) {
  if (!dns.v4 && !dns.v6) return "none";
  std::string addresses = dns.v4 ? dns.v4->to_string() : "";
  if (dns.v6) addresses += (addresses.empty() ? "" : ",") + dns.v6->to_string();
  return addresses + " port " + std::to_string(dns.port);
}

// "a,b,c", for a log field.
std::string comma_joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
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
  for (const std::string& note : dp->adoption_notes()) {
    log.info("datapath_adoption", {{"note", note}});
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
        if (auto guarded = guard_packet_sockets_locked(r, workload_netns(r).get()); !guarded.ok()) {
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
    if (auto fits = check_policy_bounds(Policy{}, policy, config_.dns_max_domain_rules);
        !fits.ok()) {
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
  const UniqueFd netns = workload_netns(r);
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

UniqueFd AttachmentManager::workload_netns(const AttachmentRecord& record) {
  return record.kind == TargetKind::kCgroup ? foreign_netns_of_cgroup(record.target) : UniqueFd();
}

Status AttachmentManager::open_dns_endpoint_locked(const AttachmentRecord& record, int netns_fd,
                                                   EndpointChange change) {
  if (dns_proxy_ == nullptr) return ok_status();
  dns::EndpointSpec spec;
  spec.attachment = record.number;
  if (record.dns.v4) spec.addresses.emplace_back(*record.dns.v4, record.dns.port);
  if (record.dns.v6) spec.addresses.emplace_back(*record.dns.v6, record.dns.port);
  // A VM's endpoint takes only what arrives through its own interface (or
  // its bridge: see the datapath's sebpf_is_other_dns_endpoint), and of
  // that only what its guard passed: not another guest's of the bridge.
  spec.device_ifindex = record.dns_device;
  if (record.kind == TargetKind::kInterface &&
      record.direction == datapath::TcDirection::kIngress) {
    spec.socket_filter_fd = dp_->endpoint_socket_filter();
  }
  // A container in a network namespace of its own has its DNS steered to
  // its own loopback: the endpoint's sockets are made there.
  spec.netns_fd = netns_fd;
  if (netns_fd >= 0) {
    log_.info("dns_endpoint_in_workload_netns", {{"id", record.id()}, {"target", record.target}});
  }
  if (spec.addresses.empty()) {
    // Named, as a tap's bridge is where the address is missing.
    char device[IF_NAMESIZE] = "";
    (void)if_indextoname(record.dns_device, device);
    log_.warning("dns_endpoint_without_address",
                 {{"id", record.id()},
                  {"target", record.target},
                  {"device", device},
                  {"impact", "no address to serve DNS on (until the device gets one)"}});
    if (change == EndpointChange::kMove) dns_proxy_->close_endpoint(record.number);
    return ok_status();
  }
  return change == EndpointChange::kMove ? dns_proxy_->move_endpoint(spec)
                                         : dns_proxy_->open_endpoint(spec);
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
  return ok_status();
}

void AttachmentManager::release_packet_socket_guard_locked(const AttachmentRecord* gone) {
  if (gone != nullptr && (gone->kind != TargetKind::kCgroup || gone->guarded_netns == 0)) return;
  struct stat own {};
  if (stat(kOwnNetns, &own) != 0) return;  // cannot tell who needs it: keep it
  const uint64_t netns = gone == nullptr ? own.st_ino : gone->guarded_netns;
  const bool ours = netns == own.st_ino;
  if (gone != nullptr && ours && !dp_->guards_own_namespace()) return;
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
    theirs = workload_netns(*gone);
    struct stat st {};
    if (!theirs || fstat(theirs.get(), &st) != 0 || st.st_ino != netns) return;
  }
  auto removed = dp_->unguard_packet_sockets(ours ? -1 : theirs.get());
  if (!removed.ok()) {
    log_.warning("packet_socket_filter_not_removed", {{"error", removed.error().message()}});
    return;
  }
  if (*removed > 0) {
    log_.info("packet_socket_filter_removed",
              {{"interfaces", std::to_string(*removed)},
               {"netns", ours ? "host" : "workload of " + gone->target},
               {"reason", "no cgroup attachment left in this network namespace"}});
  }
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

void AttachmentManager::set_dns_proxy(dns::DnsProxy* proxy) {
  std::lock_guard lock(mu_);
  dns_proxy_ = proxy;
  for (const AttachmentRecord& r : state_.records) {
    if (auto opened = open_dns_endpoint_locked(r, workload_netns(r).get()); !opened.ok()) {
      log_endpoint_failure_locked(r, opened.error());
    }
  }
}

void AttachmentManager::log_endpoint_failure_locked(const AttachmentRecord& record,
                                                    const Error& why) {
  // Deleted meanwhile (a bind to an address that went with it): no fault.
  if (endpoint_device_gone(record)) {
    log_.info("dns_endpoint_target_gone",
              {{"id", record.id()}, {"target", record.target}, {"error", why.message()}});
    return;
  }
  // Its address taken away meanwhile (a bind to it fails): no fault either.
  if (endpoint_address_gone(record)) {
    log_.info("dns_endpoint_address_gone",
              {{"id", record.id()}, {"target", record.target}, {"error", why.message()}});
    return;
  }
  log_.error("dns_endpoint_failed", {{"id", record.id()}, {"error", why.message()}});
}

void AttachmentManager::forget_locked(const AttachmentRecord& gone) {
  const uint64_t number = gone.number;
  if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(number);
  learned_.erase(number);
  teachers_.erase(number);
  bookkeeping_.erase(number);
  policy_changed_locked(number);
  release_packet_socket_guard_locked(&gone);
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

void AttachmentManager::on_host_addresses_changed() {
  // Read outside the lock: a dump of every address, while DNS answers wait
  // on mu_ to be learned.
  auto addresses = read_host_addresses();
  if (!addresses.ok()) {
    log_.error("host_addresses_unread", {{"error", addresses.error().message()}});
    return;
  }
  std::lock_guard lock(mu_);
  if (set_host_addresses_locked(addresses->all)) {
    log_.info("host_addresses_changed", {{"addresses", std::to_string(host_addresses_.size())}});
  }
  follow_interface_addresses_locked(addresses->by_interface);
}

void AttachmentManager::follow_interface_addresses_locked(const InterfaceAddresses& addresses) {
  bool moved = false;
  for (AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface) continue;
    const auto it = addresses.find(r.dns_device);
    const datapath::DnsEndpoint now =
        endpoint_on(r.dns, it == addresses.end() ? std::span<const net::IpAddress>()
                                                 : std::span<const net::IpAddress>(it->second));
    if (now == r.dns) continue;
    // A device deleted loses its addresses first; the link's own event,
    // next, detaches the attachment or moves its endpoint off a bridge.
    // (Looked up only then: two system calls per attachment at every
    // address event would be taken under the lock DNS answers wait on.)
    if (!now.v4 && !now.v6 && endpoint_device_gone(r)) continue;
    move_dns_endpoint_locked(r, now);
    moved = true;
  }
  if (!moved) return;
  save_or_log_locked();
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

bool AttachmentManager::follow_dns_device_locked(AttachmentRecord& record) {
  const uint32_t device = dns_device_of(static_cast<uint32_t>(record.key.id));
  if (device == 0 || device == record.dns_device) return false;
  record.dns_device = device;
  // Moved even if the addresses are the same: the sockets must take what
  // arrives through the new device.
  move_dns_endpoint_locked(record, endpoint_on(record.dns, read_interface_addresses(device)));
  return true;
}

void AttachmentManager::move_dns_endpoint_locked(AttachmentRecord& record,
                                                 const datapath::DnsEndpoint& to) {
  record.dns = to;
  // The sockets first: once the kernel names the new address as the only
  // DNS server the guest may ask, its queries find them there.
  if (auto moved = open_dns_endpoint_locked(record, -1, EndpointChange::kMove); !moved.ok()) {
    log_endpoint_failure_locked(record, moved.error());
  }
  // Failing this (a map write refused), the kernel still names the old
  // endpoint: DNS to it is let through, to an address the interface may
  // no longer have, until the next address change moves it.
  if (Status set = dp_->set_dns_endpoint(record.key, kernel_endpoint(to)); !set.ok()) {
    log_.error("dns_endpoint_not_moved", {{"id", record.id()}, {"error", set.error().message()}});
    return;
  }
  log_.info("dns_endpoint_moved", {{"id", record.id()},
                                   {"target", record.target},
                                   {"ipv4", to.v4 ? to.v4->to_string() : ""},
                                   {"ipv6", to.v6 ? to.v6->to_string() : ""},
                                   {"port", std::to_string(to.port)}});
}

Status AttachmentManager::apply_full_policy(const AttachmentRecord& record,
                                            const std::optional<HeldPolicy>& held) {
  const auto learned = learned_.find(record.number);
  const auto rules =
      kernel_rules(record.policy, learned == learned_.end() ? LearnedHosts{} : learned->second,
                   never_learn_, WallClock::now(), datapath::BootClock::now());
  // Expiries recomputed from wall-clock times drift from those written by
  // as far as the clocks did: a second is far more than a restart brings.
  constexpr auto kClockSlack = std::chrono::seconds(1);
  if (held && held->mode == record.policy.mode &&
      datapath::same_entries(datapath::merge_rules(held->rules), datapath::merge_rules(rules),
                             kClockSlack)) {
    return ok_status();
  }
  return dp_->replace_policy(record.key, record.policy.mode, rules);
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

Result<Policy> AttachmentManager::get_policy(uint64_t number) const {
  SEBPF_ASSIGN_OR_RETURN(AttachmentRecord r, get(number));
  drop_expired(r.policy, WallClock::now());
  return r.policy;
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

Result<Policy> AttachmentManager::change_policy(uint64_t number,
                                                const std::function<Status(Policy&)>& edit,
                                                const KernelChange& kernel) {
  std::lock_guard lock(mu_);
  AttachmentRecord* record = find_locked(number);
  if (record == nullptr) return no_attachment_locked(number);
  Policy updated = record->policy;
  drop_expired(updated, WallClock::now());
  SEBPF_RETURN_IF_ERROR(edit(updated));
  if (auto fits = check_policy_bounds(record->policy, updated, config_.dns_max_domain_rules);
      !fits.ok()) {
    return fits.error().wrap("policy of " + record->id());
  }
  if (kernel) SEBPF_RETURN_IF_ERROR(kernel(*dp_, record->key, updated));
  const Policy previous = record->policy;
  record->policy = updated;
  if (auto saved = save_locked(); !saved.ok()) {
    record->policy = previous;
    if (kernel) (void)apply_full_policy(*record);
    return saved.error().wrap("policy of " + record->id() + " (change undone)");
  }
  policy_changed_locked(number);
  prune_learned_locked(*record);
  // Only a change that may refuse a name can take back what names taught:
  // a CIDR change, or a new allow, need not judge every chain again.
  if (may_refuse_more_names(previous, updated)) revoke_refused_locked(*record);
  return updated;
}

Result<Policy> AttachmentManager::set_mode(uint64_t number, Mode mode) {
  return change_policy(
      number,
      [&](Policy& p) {
        p.mode = mode;
        return ok_status();
      },
      [&](datapath::Datapath& dp, const datapath::AttachmentKey& key, const Policy&) {
        return dp.set_mode(key, mode);
      });
}

Result<Policy> AttachmentManager::set_dns_mode(uint64_t number, Mode mode) {
  return change_policy(
      number,
      [&](Policy& p) {
        p.dns_mode = mode;
        return ok_status();
      },
      nullptr);
}

Result<Policy> AttachmentManager::add_cidr(uint64_t number, const CidrRule& rule) {
  return change_policy(
      number,
      [&](Policy& p) {
        upsert_cidr(p, rule);
        return ok_status();
      },
      [&](datapath::Datapath& dp, const datapath::AttachmentKey& key, const Policy&) {
        Policy single;
        single.cidrs.push_back(rule);
        const auto rules = kernel_rules(single, WallClock::now(), datapath::BootClock::now());
        if (rules.empty()) return ok_status();  // already expired
        return dp.add_rule(key, rules.front());
      });
}

Result<Policy> AttachmentManager::remove_cidr(uint64_t number, const net::IpPrefix& prefix,
                                              std::optional<datapath::Action> action) {
  return change_policy(
      number, [&](Policy& p) { return daemon::remove_cidr(p, prefix, action); },
      [&](datapath::Datapath& dp, const datapath::AttachmentKey& key, const Policy&) {
        auto status = dp.remove_rule(key, prefix, action);
        // The kernel may have swept an expired rule already.
        if (!status.ok() && status.error().code() == Errc::kNotFound) return ok_status();
        return status;
      });
}

Result<Policy> AttachmentManager::add_domain(uint64_t number, const DomainRule& rule) {
  return change_policy(
      number,
      [&](Policy& p) {
        upsert_domain(p, rule);
        return ok_status();
      },
      nullptr);
}

Result<Policy> AttachmentManager::remove_domain(uint64_t number, const std::string& name,
                                                std::optional<datapath::Action> action) {
  return change_policy(
      number, [&](Policy& p) { return daemon::remove_domain(p, name, action); }, nullptr);
}

Result<Policy> AttachmentManager::replace_policy(uint64_t number, const Policy& policy) {
  return change_policy(
      number,
      [&](Policy& p) {
        p = policy;
        return ok_status();
      },
      [&](datapath::Datapath& dp, const datapath::AttachmentKey& key, const Policy& updated) {
        const auto learned = learned_.find(number);
        const auto rules =
            kernel_rules(updated, learned == learned_.end() ? LearnedHosts{} : learned->second,
                         never_learn_, WallClock::now(), datapath::BootClock::now());
        return dp.replace_policy(key, updated.mode, rules);
      });
}

Result<uint16_t> AttachmentManager::allocate_dns_port_locked() {
  std::set<uint16_t> used;
  for (const AttachmentRecord& r : state_.records) used.insert(r.dns.port);
  const uint32_t first = config_.dns_port_first;
  const uint32_t range = config_.dns_port_last - first + 1;
  for (uint32_t i = 0; i < range; ++i) {
    const uint32_t port = first + (next_dns_port_ + i) % range;
    if (used.count(static_cast<uint16_t>(port))) continue;
    next_dns_port_ = port - first + 1;
    return static_cast<uint16_t>(port);
  }
  return Error(Errc::kResourceExhausted,
               "every DNS endpoint port in " + std::to_string(config_.dns_port_first) + "-" +
                   std::to_string(config_.dns_port_last) + " is taken (dns.port_first/port_last)");
}

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

void AttachmentManager::check_all_targets() {
  std::lock_guard lock(mu_);
  for (size_t i = state_.records.size(); i-- > 0;) {
    const AttachmentRecord& r = state_.records[i];
    if (kernel_target_gone(r)) {
      drop_locked(i, r.kind == TargetKind::kCgroup ? "cgroup removed" : "interface deleted");
    }
  }
}

void AttachmentManager::on_tc_filters_changed(uint32_t ifindex) {
  std::lock_guard lock(mu_);
  restore_tc_filters_locked(ifindex);
}

void AttachmentManager::restore_all_tc_filters() {
  std::set<uint32_t> ifindexes;
  {
    std::lock_guard lock(mu_);
    for (const AttachmentRecord& r : state_.records) {
      if (r.kind == TargetKind::kInterface) ifindexes.insert(static_cast<uint32_t>(r.key.id));
    }
    if (dp_->guards_own_namespace()) {
      std::unique_ptr<struct if_nameindex, decltype(&if_freenameindex)> all(if_nameindex(),
                                                                            &if_freenameindex);
      for (const struct if_nameindex* i = all.get(); i != nullptr && i->if_index != 0; ++i) {
        ifindexes.insert(i->if_index);
      }
    }
  }
  // One interface at a time under the lock, so that API calls (and a
  // start's first) do not wait for them all.
  for (const uint32_t ifindex : ifindexes) on_tc_filters_changed(ifindex);
}

// Under the lock, so that a detach (which takes our filters off, then
// forgets the record) is never undone: its events find no record.
void AttachmentManager::restore_tc_filters_locked(uint32_t ifindex) {
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface || r.key.id != ifindex) continue;
    auto restored = dp_->restore_interface_filters(r.key);
    if (!restored.ok()) {
      log_.error("attachment_filters_not_restored",
                 {{"id", r.id()}, {"target", r.target}, {"error", restored.error().message()}});
    } else if (!restored->empty()) {
      // Frames passed unfiltered from the removal until now: an operator
      // wants to know who removes a security product's filters.
      log_.error("attachment_filters_restored", {{"id", r.id()},
                                                 {"target", r.target},
                                                 {"hooks", restored->hooks},
                                                 {"found", restored->found}});
    }
    break;
  }
  auto restored = dp_->restore_packet_socket_filter(ifindex);
  if (!restored.ok()) {
    log_.error("packet_socket_guard_failed",
               {{"ifindex", std::to_string(ifindex)}, {"error", restored.error().message()}});
  } else if (!restored->empty()) {
    char name[IF_NAMESIZE] = {};
    log_.error("packet_socket_filter_restored",
               {{"ifindex", std::to_string(ifindex)},
                {"interface", if_indextoname(ifindex, name) != nullptr ? name : ""},
                {"found", *restored}});
  }
}

AttachmentManager::PinnedDirs AttachmentManager::pinned_dirs() const {
  std::lock_guard lock(mu_);
  PinnedDirs dirs{dp_->pin_dirs(), {}};
  if (dirs.top.root.empty()) return dirs;
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kCgroup)
      dirs.cgroup_links[r.key.id] = dp_->cgroup_links_dir(r.key.id);
  }
  return dirs;
}

void AttachmentManager::on_map_pins_removed() {
  std::lock_guard lock(mu_);
  restore_map_pins_locked();
}

void AttachmentManager::on_link_pins_removed(uint64_t cgroup_id) {
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.kind == TargetKind::kCgroup && r.key.id == cgroup_id) restore_links_locked(r);
  }
}

void AttachmentManager::restore_all_pins() {
  std::vector<uint64_t> cgroups;
  {
    std::lock_guard lock(mu_);
    restore_map_pins_locked();
    for (const AttachmentRecord& r : state_.records) {
      if (r.kind == TargetKind::kCgroup) cgroups.push_back(r.key.id);
    }
  }
  // One cgroup at a time under the lock (about 25 us each), so that API
  // calls (and a start's first) do not wait for them all.
  for (const uint64_t id : cgroups) on_link_pins_removed(id);
}

void AttachmentManager::restore_map_pins_locked() {
  auto restored = dp_->restore_map_pins();
  if (!restored.ok()) {
    log_.error("map_pins_not_restored", {{"error", restored.error().message()},
                                         {"impact", "the next start cannot adopt the state"}});
  } else if (!restored->empty()) {
    log_.error("map_pins_restored", {{"maps", comma_joined(*restored)}});
  }
}

// Under the lock, so that a detach (which removes the cgroup's pins, then
// forgets the record) is never undone: its events find no record.
void AttachmentManager::restore_links_locked(const AttachmentRecord& r) {
  if (r.kind != TargetKind::kCgroup) return;
  auto restored = dp_->restore_cgroup_links(r.key, r.target);
  if (!restored.ok()) {
    log_.error("attachment_links_not_restored",
               {{"id", r.id()}, {"target", r.target}, {"error", restored.error().message()}});
  } else if (!restored->empty()) {
    // Those programs did not run from the removal until now.
    log_.error("attachment_links_restored",
               {{"id", r.id()}, {"target", r.target}, {"programs", comma_joined(*restored)}});
  }
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

namespace {

bool missing(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) != 0 && errno == ENOENT;
}

}  // namespace

void AttachmentManager::restore_state_files() {
  std::unique_lock lock(mu_);
  restore_state_file_locked();
  // Written by the last save, which described them all (with changes
  // since, the next sweep writes it anyway).
  if (!teachers_changed_ && !teachers_.empty() && missing(config_.learned_chains_file())) {
    save_teachers(lock);
    if (!teachers_changed_) {  // else logged as not saved, and tried again at the next sweep
      log_.error("state_file_restored", {{"file", config_.learned_chains_file()},
                                         {"reason", "another program removed it"}});
    }
  }
}

void AttachmentManager::restore_state_file_locked() {
  if (!missing(config_.state_file())) return;
  if (Status saved = save_locked(); !saved.ok()) {
    log_.error("state_save_failed",
               {{"error", saved.error().message()},
                {"impact", "the next start detaches every attachment, finding none recorded"}});
    return;
  }
  log_.error("state_file_restored",
             {{"file", config_.state_file()}, {"reason", "another program removed it"}});
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
