#include "daemon/attachment_manager.h"

#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/container/inlined_vector.h"
#include "daemon/target_resolver.h"
#include "daemon/uplink_check.h"
#include "datapath/system.h"
#include "dns/name_policy.h"
#include "state/state_file.h"

namespace sebpf::daemon {

namespace {

// Whether answers teach the attachment hosts (disabled forwards without
// learning, block_all refuses).
bool dns_mode_learns(datapath::Mode mode) {
  return mode == datapath::Mode::kAllowlist || mode == datapath::Mode::kDenylist;
}

dns::NamePolicy name_policy_of(const Policy& policy) {
  dns::NamePolicy names;
  names.mode = policy.dns_mode;
  // Names in a stored policy were normalized when they were added.
  for (const DomainRule& d : policy.domains) (void)names.rules.add(d.name, d.action);
  return names;
}

}  // namespace

using datapath::Mode;
using datapath::TargetKind;

namespace {

constexpr size_t kMaxNotices = 4096;
// How much longer than an answer's TTL a learned host is written to be held
// (see learn()).
constexpr std::chrono::seconds kLearnedHostSlack{1};

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
  char name[IF_NAMESIZE];
  return if_indextoname(static_cast<unsigned>(r.key.id), name) == nullptr;
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
  log.info("datapath_open",
           {{"pin_dir", config.datapath.pin_dir}, {"adopted", dp->adopted() ? "true" : "false"}});
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
    manager->restore_teachers_locked();
    // A tap readdressed while the daemon was down.
    manager->follow_interface_addresses_locked(host_addresses.by_interface);
  }
  return manager;
}

void AttachmentManager::set_cgroup_attached_hook(std::function<void(const std::string&)> hook) {
  std::lock_guard lock(mu_);
  cgroup_hook_ = std::move(hook);
}

// Brings the kernel in line with the state file: adopted attachments get
// the stored policy (one atomic swap, so no gap), attachments whose target
// is back (after a reboot) are attached again, the rest are dropped, and
// kernel attachments nobody recorded are detached.
Status AttachmentManager::reconcile() {
  SEBPF_ASSIGN_OR_RETURN(auto kernel, dp_->attachments());
  auto in_kernel = [&](const AttachmentRecord& r) {
    return std::any_of(kernel.begin(), kernel.end(), [&](const datapath::Attachment& a) {
      return a.key == r.key && a.serial == r.serial;
    });
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
  std::vector<AttachmentRecord> kept;
  for (AttachmentRecord& r : state_.records) {
    if (in_kernel(r)) {
      // Learned addresses live only in the kernel maps: read them back so
      // the policy applied below keeps them.
      if (auto rules = dp_->rules(r.key); rules.ok()) {
        const auto boot_now = datapath::BootClock::now();
        for (const datapath::Rule& rule : *rules) {
          if (rule.learned && rule.expires && *rule.expires > boot_now) {
            learned_[r.number][rule.prefix.address()].until = *rule.expires;
          }
        }
      }
      auto applied = apply_full_policy(r);
      if (!applied.ok()) {
        log_.error("restore_policy_failed", {{"id", r.id()}, {"error", applied.error().message()}});
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
      notices_.push_back({r.id(), r.target, "target removed while the daemon was not running"});
      continue;
    }
    // The kernel does not hold it (after a reboot, or a crash mid-detach)
    // but the target exists: attach again, failing closed.
    auto again = attach_locked({r.kind, r.target, r.metadata, r.policy}, r.number, r.created,
                               r.applied_policy, r.dns);
    if (!again.ok()) {
      log_.error("reattach_failed",
                 {{"id", r.id()}, {"target", r.target}, {"error", again.error().message()}});
      notices_.push_back({r.id(), r.target, "could not attach again: " + again.error().message()});
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
  std::function<void(const std::string&)> hook;
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
    std::string applied = "builtin-default";
    if (spec.policy) {
      applied = "request";
    } else if (auto selection = policies_.select(spec.metadata)) {
      applied = selection->name;
    }
    const auto t0 = std::chrono::steady_clock::now();
    SEBPF_ASSIGN_OR_RETURN(
        record, attach_locked(spec, state_.next_number, WallClock::now(), applied, std::nullopt));
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
  if (hook && record.kind == TargetKind::kCgroup) hook(record.target);
  return record;
}

Result<AttachmentRecord> AttachmentManager::attach_locked(
    const AttachSpec& spec, uint64_t number, WallClock::time_point created,
    const std::string& applied_policy, std::optional<datapath::DnsEndpoint> dns) {
  AttachmentRecord r;
  r.number = number;
  r.kind = spec.kind;
  r.target = spec.target;
  r.metadata = spec.metadata;
  r.created = created;
  r.applied_policy = applied_policy;
  if (spec.policy) {
    r.policy = *spec.policy;
  } else if (auto selection = policies_.select(spec.metadata)) {
    r.policy = policy_from_spec(*selection->spec);
  } else {
    r.policy = builtin_default_policy();
  }
  if (spec.kind == TargetKind::kInterface) {
    r.dns_device = dns_device_of(if_nametoindex(spec.target.c_str()));
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
  if (r.dns.v4 || r.dns.v6) options.dns = r.dns;
  options.direction = r.direction;
  auto attached = spec.kind == TargetKind::kCgroup ? dp_->attach_cgroup(spec.target, options)
                                                   : dp_->attach_interface(spec.target, options);
  if (!attached.ok()) {
    if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(r.number);
    return attached.error();
  }
  r.key = attached->key;
  r.serial = attached->serial;
  if (r.kind == TargetKind::kCgroup) {
    // Fail closed: a workload whose packet sockets nothing sees is not held.
    if (auto guarded = guard_packet_sockets_locked(r, netns.get()); !guarded.ok()) {
      (void)dp_->detach(r.key);
      if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(r.number);
      return guarded.error();
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

Status AttachmentManager::guard_packet_sockets_locked(AttachmentRecord& record, int netns_fd) {
  const bool ours = netns_fd < 0;
  struct stat st {};
  if (ours ? stat("/proc/self/ns/net", &st) != 0 : fstat(netns_fd, &st) != 0) {
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
      log_.error("dns_endpoint_failed", {{"id", r.id()}, {"error", opened.error().message()}});
    }
  }
}

void AttachmentManager::forget_locked(uint64_t number) {
  if (dns_proxy_ != nullptr) dns_proxy_->close_endpoint(number);
  learned_.erase(number);
  teachers_.erase(number);
  bookkeeping_.erase(number);
  policy_changed_locked(number);
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

const LearnableIndex& AttachmentManager::learnable_index_locked(const AttachmentRecord& record) {
  return learnable_indexes_.try_emplace(record.number, record.policy, never_learn_).first->second;
}

std::shared_ptr<const dns::NamePolicy> AttachmentManager::name_policy(uint64_t number) const {
  {
    std::lock_guard cache_lock(name_policies_mu_);
    if (auto cached = name_policies_.find(number); cached != name_policies_.end()) {
      return cached->second;
    }
  }
  std::lock_guard lock(mu_);
  for (const AttachmentRecord& r : state_.records) {
    if (r.number != number) continue;
    auto built = std::make_shared<dns::NamePolicy>(name_policy_of(r.policy));
    std::lock_guard cache_lock(name_policies_mu_);
    name_policies_[number] = built;
    return built;
  }
  return nullptr;
}

Result<dns::LearnOutcome> AttachmentManager::learn(uint64_t number,
                                                   std::span<const dns::LearnedAddress> addresses,
                                                   uint64_t judged_at) {
  std::lock_guard lock(mu_);
  const AttachmentRecord* record = find_locked(number);
  if (record == nullptr) {
    return Error(Errc::kNotFound, "no attachment " + attachment_id_to_api(number));
  }
  // Policies change with mu_ held. So if the generation has not moved, no
  // change came between judging these answers and now, and the revocation
  // pass of any later change will see what this records.
  if (name_policy_generation_.load(std::memory_order_relaxed) != judged_at) {
    return dns::LearnOutcome::kPolicyChanged;
  }
  const auto wall_now = WallClock::now();
  const auto boot_now = datapath::BootClock::now();
  LearnedHosts& hosts = learned_[number];
  const LearnableIndex& index = learnable_index_locked(*record);
  absl::InlinedVector<const dns::LearnedAddress*, 16>
      taught;  // remembered once the kernel holds them
  // A turn's answers name up to a few hundred new addresses, each a cache
  // miss in a table of 100k hosts: ask for all of them first, so that the
  // misses overlap instead of following one another.
  for (const dns::LearnedAddress& a : addresses) hosts.prefetch(a.address);
  // Inline: a turn's answers rarely bring more, and this runs per turn.
  absl::InlinedVector<datapath::Rule, 32> rules;
  for (const dns::LearnedAddress& a : addresses) {
    switch (index.judge(a.address, wall_now)) {
      case LearnableIndex::Verdict::kLearnable:
        if (!a.chain.empty()) taught.push_back(&a);
        break;
      case LearnableIndex::Verdict::kUserRuleDecides:
        continue;
      case LearnableIndex::Verdict::kNeverLearned:
        bookkeeping_[number].not_learned++;
        report_never_learned(*record, a.address);
        continue;
    }
    // The client may use the answer for its whole TTL, so the host must be
    // held at least that long. Already held so: no kernel write. Otherwise
    // it is written to be held a second longer, so that a name asked all
    // the time costs a write a second, not one per answer.
    const auto deadline = boot_now + std::chrono::seconds(a.ttl);
    if (auto it = hosts.find(a.address); it != hosts.end() && it->second.until >= deadline) {
      continue;
    }
    auto host = net::IpPrefix::make(a.address, a.address.max_prefix_length());
    if (!host.ok()) continue;  // not a rule the filter could use
    rules.push_back({*host, datapath::Action::kAllow, deadline + kLearnedHostSlack,
                     /*learned=*/true});
  }
  // Every taught host is in `hosts` by now (held already, or just
  // written): a lookup in cache. An answer's addresses share one chain,
  // added once.
  TeachingChains& chains = teachers_[number];
  const auto remember = [&] {
    std::string_view last_chain;
    uint64_t last_id = 0;
    for (const dns::LearnedAddress* a : taught) {
      const auto host = hosts.find(a->address);
      if (host == hosts.end()) continue;  // not a rule the filter could use
      if (a->chain.data() != last_chain.data() || a->chain.size() != last_chain.size()) {
        last_chain = a->chain;
        last_id = chains.add(a->chain);
      }
      host->second.taught(last_id);
    }
  };
  if (Status room = make_chain_room_locked(*record, hosts, chains, taught); !room.ok()) {
    ++bookkeeping_[number].no_room;
    return room.error();
  }
  if (!taught.empty() || !rules.empty()) teachers_changed_ = true;
  if (rules.empty()) {
    remember();
    return dns::LearnOutcome::kHeld;
  }
  // One rule per host, the longest-lived: answers may name a host twice,
  // and of two writes to one key the last would stand.
  std::sort(rules.begin(), rules.end(), [](const datapath::Rule& a, const datapath::Rule& b) {
    return a.prefix != b.prefix ? a.prefix < b.prefix : a.expires > b.expires;
  });
  rules.erase(std::unique(rules.begin(), rules.end(),
                          [](const datapath::Rule& a, const datapath::Rule& b) {
                            return a.prefix == b.prefix;
                          }),
              rules.end());
  if (Status room = make_room_locked(*record, hosts, rules); !room.ok()) {
    ++bookkeeping_[number].no_room;
    return room.error();
  }
  if (Status written = dp_->add_rules(record->key, rules); !written.ok()) {
    if (written.error().code() == Errc::kResourceExhausted) ++bookkeeping_[number].no_room;
    // The write may have stopped part-way (a full table): take back the
    // new hosts it wrote. The answer is refused, and the kernel must hold
    // no more than `hosts` says, which is what policy changes prune by
    // (a learned host left out of it would outlive a deny added over it).
    for (const datapath::Rule& rule : rules) {
      if (hosts.contains(rule.prefix.address())) continue;
      auto removed = dp_->remove_rule(record->key, rule.prefix, datapath::Action::kAllow);
      if (!removed.ok() && removed.error().code() != Errc::kNotFound) {
        log_.error("learned_rule_not_removed", {{"id", record->id()},
                                                {"address", rule.prefix.to_string()},
                                                {"error", removed.error().message()}});
      }
    }
    return written.error();
  }
  for (const datapath::Rule& rule : rules) {
    auto& held = hosts[rule.prefix.address()].until;
    held = std::max(held, *rule.expires);
  }
  remember();
  return dns::LearnOutcome::kHeld;
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
    log_.error("dns_endpoint_failed", {{"id", record.id()}, {"error", moved.error().message()}});
  }
  // Failing this, the kernel keeps letting DNS through to the old
  // address, which the interface no longer has: the guest resolves
  // nothing (fail closed) until the next address change.
  if (Status set = dp_->set_dns_endpoint(record.key, to); !set.ok()) {
    log_.error("dns_endpoint_not_moved", {{"id", record.id()}, {"error", set.error().message()}});
    return;
  }
  log_.info("dns_endpoint_moved", {{"id", record.id()},
                                   {"target", record.target},
                                   {"ipv4", to.v4 ? to.v4->to_string() : ""},
                                   {"ipv6", to.v6 ? to.v6->to_string() : ""},
                                   {"port", std::to_string(to.port)}});
}

bool AttachmentManager::set_host_addresses_locked(
    const std::vector<net::IpAddress>& host_addresses) {
  // A container's veth coming or going adds or drops a link-local address:
  // a change that needs no work.
  std::vector<net::IpAddress> outside;
  for (const net::IpAddress& a : host_addresses) {
    if (!configured_never_learn_.covers(a)) outside.push_back(a);
  }
  if (outside == host_addresses_) return false;
  host_addresses_ = std::move(outside);
  std::vector<net::IpPrefix> ranges = config_.dns_never_learn;
  for (const net::IpAddress& a : host_addresses_) {
    if (auto host = net::IpPrefix::make(a, a.max_prefix_length()); host.ok()) {
      ranges.push_back(*host);
    }
  }
  // The cached indexes refer to never_learn_, which stays where it is.
  never_learn_ = NeverLearnRanges(ranges);
  for (const AttachmentRecord& r : state_.records) prune_learned_locked(r);
  return true;
}

void AttachmentManager::report_never_learned(const AttachmentRecord& record,
                                             const net::IpAddress& address) {
  // As many as workloads ask for: rate-limited like the DNS warnings.
  const char* const kReason =
      std::binary_search(host_addresses_.begin(), host_addresses_.end(), address)
          ? "an address of this host: an answer does not open it, an explicit allow rule does"
          : "in dns.never_learn: an answer does not open it, an explicit allow rule does";
  never_learned_log_.warning(
      log_, "dns_address_not_learned", record.number,
      {{"id", record.id()}, {"address", address.to_string()}, {"reason", kReason}});
}

LearnedRoom AttachmentManager::learned_room_locked() const {
  if (!learners_) {
    learners_ = static_cast<size_t>(std::count_if(
        state_.records.begin(), state_.records.end(),
        [](const AttachmentRecord& r) { return dns_mode_learns(r.policy.dns_mode); }));
  }
  return {dp_->config().max_host_rules, config_.dns_max_learned_hosts, *learners_};
}

size_t AttachmentManager::others_learned_claim_locked(uint64_t number, size_t share) const {
  size_t claim = 0;
  for (const AttachmentRecord& r : state_.records) {
    if (r.number == number) continue;
    const auto hosts = learned_.find(r.number);
    const size_t held = hosts == learned_.end() ? 0 : hosts->second.size();
    claim += dns_mode_learns(r.policy.dns_mode) ? std::max(held, share) : held;
  }
  return claim;
}

Status AttachmentManager::make_room_locked(const AttachmentRecord& record,
                                           const LearnedHosts& hosts,
                                           std::span<const datapath::Rule> rules) {
  const LearnedRoom room = learned_room_locked();
  const auto now = datapath::BootClock::now();
  // The others' claim is a walk of every attachment, asked for each answer
  // that refreshes hosts of one past its share (which may ask at its
  // dns.max_qps): taken at most once a second per attachment, so that it
  // cannot hold up everyone's answers, which wait on the same lock.
  const auto others_claim = [&] {
    LearnBookkeeping& kept = bookkeeping_[record.number];
    if (!kept.claim_taken || now - *kept.claim_taken >= std::chrono::seconds(1)) {
      kept.claim_taken = now;
      kept.others_claim = others_learned_claim_locked(record.number, room.share());
    }
    return kept.others_claim;
  };
  // Pruning below drops from `hosts` in place.
  const auto judge = [&] {
    const auto new_hosts =
        static_cast<size_t>(std::count_if(rules.begin(), rules.end(), [&](const datapath::Rule& r) {
          return !hosts.contains(r.prefix.address());
        }));
    return judge_learned_room(room, hosts.size(), new_hosts, others_claim);
  };
  LearnedRoomVerdict verdict = judge();
  if (verdict == LearnedRoomVerdict::kFits) return ok_status();
  // Expired hosts still count until a sweep drops them: drop them now, but
  // at most once a second, as that walks all of the attachment's hosts.
  LearnBookkeeping& kept = bookkeeping_[record.number];
  if (!kept.pruned || now - *kept.pruned >= std::chrono::seconds(1)) {
    kept.pruned = now;
    prune_learned_locked(record);
    verdict = judge();
    if (verdict == LearnedRoomVerdict::kFits) return ok_status();
  }
  const std::string held = std::to_string(hosts.size());
  if (verdict == LearnedRoomVerdict::kOverMax) {
    return Error(Errc::kResourceExhausted,
                 record.id() + " holds " + held +
                     " hosts learned from DNS, its most (dns.max_learned_hosts: " +
                     std::to_string(room.max_per_attachment) +
                     "): answers naming new ones are refused until some expire");
  }
  return Error(
      Errc::kResourceExhausted,
      record.id() + " holds " + held +
          " hosts learned from DNS, its share of the learned-host table or more "
          "(datapath.max_host_rules " +
          std::to_string(room.table_hosts) + " split among " + std::to_string(room.learners) +
          " attachments that learn and one part kept free: " + std::to_string(room.share()) +
          " each): answers that need room are refused until some of its hosts expire");
}

Status AttachmentManager::make_chain_room_locked(
    const AttachmentRecord& record, const LearnedHosts& hosts, TeachingChains& chains,
    std::span<const dns::LearnedAddress* const> taught) {
  size_t new_bytes = 0;
  std::string_view last_chain;
  for (const dns::LearnedAddress* a : taught) {
    // An answer's addresses share one chain.
    if (a->chain.data() == last_chain.data() && a->chain.size() == last_chain.size()) continue;
    last_chain = a->chain;
    if (!chains.knows(a->chain)) new_bytes += a->chain.size();
  }
  if (new_bytes == 0) return ok_status();
  const size_t most = learned_room_locked().chain_bytes();
  if (chains.text_bytes() + new_bytes <= most) return ok_status();
  // A walk of all its hosts and chains: at most once a second.
  const auto now = datapath::BootClock::now();
  LearnBookkeeping& kept = bookkeeping_[record.number];
  if (!kept.chains_compacted || now - *kept.chains_compacted >= std::chrono::seconds(1)) {
    kept.chains_compacted = now;
    chains.compact(hosts);
    if (chains.text_bytes() + new_bytes <= most) return ok_status();
  }
  return Error(Errc::kResourceExhausted,
               record.id() + ": the names that taught its learned hosts take " +
                   std::to_string(chains.text_bytes()) + " bytes, its most (" +
                   std::to_string(LearnedRoom::kChainBytesPerHost) +
                   " per host of its share of the learned-host table): answers by names not "
                   "seen before are refused until hosts expire");
}

void AttachmentManager::prune_learned_locked(const AttachmentRecord& record) {
  auto it = learned_.find(record.number);
  if (it == learned_.end()) return;
  const auto dropped = prune_learned(it->second, learnable_index_locked(record), WallClock::now(),
                                     datapath::BootClock::now());
  remove_learned_rules_locked(record, dropped);
}

void AttachmentManager::revoke_refused_locked(const AttachmentRecord& record) {
  const auto learned = learned_.find(record.number);
  if (learned == learned_.end()) return;
  const dns::NamePolicy names = name_policy_of(record.policy);
  // Refused as the endpoint would refuse the answer now: its query, or a
  // name its CNAME chain passes through.
  std::vector<net::IpAddress> dropped = teachers_[record.number].refused(
      learned->second,
      [&](std::span<const std::string_view> chain) { return dns::answer_refused(names, chain); });
  for (const net::IpAddress& host : dropped) learned->second.erase(host);
  const size_t refused_hosts = dropped.size();
  // Hosts read back from the kernel that no saved record covers (the last
  // daemon did not stop cleanly): nothing says whether a name still
  // allowed taught them, so they go too (fail closed; clients resolve the
  // names again).
  absl::erase_if(learned->second, [&](const auto& host) {
    if (!host.second.taught_by.empty()) return false;
    dropped.push_back(host.first);
    return true;
  });
  if (dropped.empty()) return;
  remove_learned_rules_locked(record, dropped);
  // Connections to a refused name's hosts end too: a workload denied a
  // name must not keep talking to it over a connection opened before.
  // Not those to untaught hosts: nothing says a name now refused taught
  // them.
  size_t ended = 0;
  if (auto forgotten =
          dp_->forget_learned_connections(record.key, std::span(dropped).first(refused_hosts));
      forgotten.ok()) {
    ended = *forgotten;
  } else {
    log_.error("learned_connections_not_ended",
               {{"id", record.id()}, {"error", forgotten.error().message()}});
  }
  log_.info("learned_hosts_revoked", {{"id", record.id()},
                                      {"hosts", std::to_string(dropped.size())},
                                      {"untaught", std::to_string(dropped.size() - refused_hosts)},
                                      {"connections_ended", std::to_string(ended)}});
}

void AttachmentManager::remove_learned_rules_locked(const AttachmentRecord& record,
                                                    std::span<const net::IpAddress> dropped) {
  if (dropped.empty()) return;
  // A rule the user wrote for exactly a host replaced the learned one there.
  std::set<net::IpPrefix> user_hosts;
  for (const CidrRule& c : record.policy.cidrs) {
    if (c.prefix.is_host()) user_hosts.insert(c.prefix);
  }
  for (const net::IpAddress& address : dropped) {
    const auto made = net::IpPrefix::make(address, address.max_prefix_length());
    if (!made.ok()) continue;
    const net::IpPrefix& host = *made;
    if (user_hosts.count(host)) continue;
    auto removed = dp_->remove_rule(record.key, host, datapath::Action::kAllow);
    if (!removed.ok() && removed.error().code() != Errc::kNotFound) {
      log_.error("learned_rule_not_removed", {{"id", record.id()},
                                              {"address", address.to_string()},
                                              {"error", removed.error().message()}});
    }
  }
}

Status AttachmentManager::apply_full_policy(const AttachmentRecord& record) {
  const auto learned = learned_.find(record.number);
  const auto rules =
      kernel_rules(record.policy, learned == learned_.end() ? LearnedHosts{} : learned->second,
                   never_learn_, WallClock::now(), datapath::BootClock::now());
  return dp_->replace_policy(record.key, record.policy.mode, rules);
}

Status AttachmentManager::detach(uint64_t number) {
  std::lock_guard lock(mu_);
  const auto it = std::find_if(state_.records.begin(), state_.records.end(),
                               [&](const AttachmentRecord& r) { return r.number == number; });
  if (it == state_.records.end()) {
    return Error(Errc::kNotFound, "no attachment " + attachment_id_to_api(number));
  }
  const AttachmentRecord record = *it;
  state_.records.erase(it);
  if (auto saved = save_locked(); !saved.ok()) {
    state_.records.push_back(record);
    return saved.error().wrap("detach " + record.id() + " (nothing changed)");
  }
  auto status = dp_->detach(record.key);
  forget_locked(record.number);
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
  return Error(Errc::kNotFound, "no attachment " + attachment_id_to_api(number));
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
  return Error(Errc::kNotFound, "no attachment " + attachment_id_to_api(number));
}

Result<Policy> AttachmentManager::change_policy(uint64_t number,
                                                const std::function<Status(Policy&)>& edit,
                                                const KernelChange& kernel) {
  std::lock_guard lock(mu_);
  AttachmentRecord* record = find_locked(number);
  if (record == nullptr)
    return Error(Errc::kNotFound, "no attachment " + attachment_id_to_api(number));
  Policy updated = record->policy;
  drop_expired(updated, WallClock::now());
  SEBPF_RETURN_IF_ERROR(edit(updated));
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
  auto saved = save_locked();
  auto status = dp_->detach(record.key);
  forget_locked(record.number);
  notices_.push_back({record.id(), record.target, reason});
  if (notices_.size() > kMaxNotices) notices_.erase(notices_.begin());
  log_.info("target_removed", {{"id", record.id()},
                               {"target", record.target},
                               {"reason", reason},
                               {"state", saved.ok() ? "saved" : saved.error().message()},
                               {"kernel", status.ok() ? "detached" : status.error().message()}});
}

void AttachmentManager::on_interface_removed(uint32_t ifindex) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < state_.records.size(); ++i) {
    const AttachmentRecord& r = state_.records[i];
    if (r.kind == TargetKind::kInterface && r.key.id == ifindex && kernel_target_gone(r)) {
      drop_locked(i, "interface deleted");
      return;
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

std::vector<DetachNotice> AttachmentManager::detach_notices() const {
  std::lock_guard lock(mu_);
  return notices_;
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

void AttachmentManager::save_teachers(std::unique_lock<std::mutex>& lock) {
  TeachersByAttachment teachers = teachers_;
  std::map<uint64_t, LearnedHosts> learned;
  for (const auto& [number, chains] : teachers_) {
    if (auto hosts = learned_.find(number); hosts != learned_.end()) learned.emplace(*hosts);
  }
  teachers_changed_ = false;
  lock.unlock();
  const Status saved = state::write_state_file(config_.learned_chains_file(),
                                               encode_learned_chains(teachers, learned));
  lock.lock();
  if (!saved.ok()) {
    log_.error("learned_chains_not_saved", {{"error", saved.error().message()}});
    teachers_changed_ = true;  // tried again at the next sweep
  }
}

Status AttachmentManager::shutdown(bool detach_all) {
  std::unique_lock lock(mu_);
  if (!detach_all) {
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

void AttachmentManager::restore_teachers_locked() {
  const std::string path = config_.learned_chains_file();
  auto bytes = state::read_state_file(path);
  if (!bytes.ok()) {
    if (bytes.error().code() != Errc::kNotFound) {
      log_.warning("learned_chains_unreadable", {{"error", bytes.error().message()}});
    }
    return;
  }
  auto read = decode_learned_chains(*bytes);
  if (!read.ok()) {
    log_.warning("learned_chains_unreadable", {{"error", read.error().wrap(path).message()}});
  } else {
    size_t restored = 0;
    size_t learned_since = 0;
    for (auto& [number, saved] : *read) {
      const auto learned = learned_.find(number);
      if (learned == learned_.end()) continue;  // detached, or its hosts expired
      // Only for hosts the kernel still holds until the instant the file
      // recorded; nothing is learned before the DNS endpoints open, after
      // this. A host written again after the file was (a sweep's copy,
      // then a crash) may have been taught by names it does not know: it
      // stays without teachers, dropped at the first change that may
      // refuse a name. (Answers that taught a host without writing it, as
      // it was held long enough already, are missing too: the file then
      // says what the daemon knew when it wrote it, whose answers had
      // promised the host until that instant.)
      for (auto& [address, host] : saved.hosts) {
        const auto held = learned->second.find(address);
        if (held == learned->second.end()) continue;  // expired while no daemon ran
        if (held->second.until != host.until) {
          ++learned_since;
          continue;
        }
        held->second.taught_by = std::move(host.taught_by);
        ++restored;
      }
      TeachingChains& kept = teachers_[number] = std::move(saved.chains);
      kept.compact_if_sparse(learned->second);
    }
    log_.info("learned_chains_restored", {{"hosts", std::to_string(restored)},
                                          {"learned_again_since", std::to_string(learned_since)}});
  }
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
