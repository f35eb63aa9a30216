#include "datapath/datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <system_error>
#include <tuple>
#include <unordered_map>

#include "absl/container/inlined_vector.h"
#include "datapath/attachment_table.h"
#include "datapath/bpf_map_util.h"
#include "datapath/cgroup_hooks.h"
#include "datapath/datapath_impl.h"
#include "datapath/features.h"
#include "datapath/flow_tables.h"
#include "datapath/libbpf_log.h"
#include "datapath/packet_socket_guard.h"
#include "datapath/program_ownership.h"
#include "datapath/rcu_barrier.h"
#include "datapath/rule_codec.h"
#include "datapath/rule_store.h"
#include "datapath/system.h"
#include "datapath/tc_hooks.h"

namespace sebpf::datapath {
namespace fs = std::filesystem;
namespace {

Status validate(const Config& c) {
  auto positive = [](uint32_t v, const char* name) -> Status {
    if (v == 0) return Error(Errc::kInvalidArgument, std::string(name) + " must be positive");
    return ok_status();
  };
  SEBPF_RETURN_IF_ERROR(positive(c.max_attachments, "max_attachments"));
  SEBPF_RETURN_IF_ERROR(positive(c.max_host_rules, "max_host_rules"));
  SEBPF_RETURN_IF_ERROR(positive(c.max_prefix_rules, "max_prefix_rules"));
  if (c.max_flows_per_attachment < kMinFlowsPerAttachment) {
    return Error(Errc::kInvalidArgument, "max_flows_per_attachment must be at least " +
                                             std::to_string(kMinFlowsPerAttachment));
  }
  if (c.flow_idle_tcp.count() <= 0 || c.flow_idle_other.count() <= 0) {
    return Error(Errc::kInvalidArgument, "flow idle timeouts must be positive");
  }
  if (c.dhcp_request_burst == 0 || c.dhcp_request_interval.count() <= 0) {
    return Error(Errc::kInvalidArgument,
                 "dhcp_request_burst and dhcp_request_interval must be positive");
  }
  if (!c.pin_dir.empty() && c.pin_dir[0] != '/') {
    return Error(Errc::kInvalidArgument, "pin_dir \"" + c.pin_dir + "\" must be absolute");
  }
  return ok_status();
}

// What identifies the programs this process would load: the object built
// into the binary and the load-time settings (.rodata). Programs pinned
// under the same id are the same programs, verified already.
std::string program_build_id(const sebpf_datapath& skel) {
  size_t elf_size = 0;
  const auto* elf = static_cast<const uint8_t*>(sebpf_datapath__elf_bytes(&elf_size));
  const auto* rodata = reinterpret_cast<const uint8_t*>(skel.rodata);
  uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a
  const auto add = [&](const uint8_t* bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
  };
  add(elf, elf_size);
  add(rodata, sizeof *skel.rodata);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

// The learned-host table needs x86-64's memory order (see learned_table.h);
// elsewhere learned hosts stay in the host maps.
#if defined(__x86_64__)
constexpr bool kLearnedTableSupported = true;
#else
constexpr bool kLearnedTableSupported = false;
#endif

}  // namespace

uint64_t own_netns_ino() {
  struct stat st {};
  return stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
}

uint32_t learned_buckets(const Config& config) {
  if (!kLearnedTableSupported) return 1;
  const uint64_t slots = 2ULL * config.max_host_rules;
  return static_cast<uint32_t>(
      std::bit_ceil(std::max<uint64_t>(1, (slots + SEBPF_LEARNED_WAYS - 1) / SEBPF_LEARNED_WAYS)));
}

uint32_t netns_events_bytes(const Config& config) {
  // A report and its ring buffer header, for each attachment; a power of
  // two of pages, as the kernel wants.
  const uint64_t wanted = (sizeof(sebpf_netns_event) + BPF_RINGBUF_HDR_SZ) * config.max_attachments;
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return static_cast<uint32_t>(std::bit_ceil(std::max(wanted, page)));
}

Datapath::Datapath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Datapath::~Datapath() {
  // Without pins, enforcement is ours alone and ends with us; TC filters
  // would otherwise outlive the process.
  if (impl_ && impl_->config.pin_dir.empty() && impl_->table) {
    auto records = impl_->table->all();
    if (records.ok()) {
      for (const auto& r : *records) (void)impl_->remove_attachment(r);
    }
    if (impl_->guarded_own_netns) (void)impl_->packet_socket_guard->unguard(-1);
  }
}

Result<std::unique_ptr<Datapath>> Datapath::open(const Config& config) {
  SEBPF_RETURN_IF_ERROR(validate(config));
  install_libbpf_logger();
  SEBPF_RETURN_IF_ERROR(check_privileges());
  SEBPF_RETURN_IF_ERROR(probe_kernel_features());
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  SEBPF_RETURN_IF_ERROR(impl->load());
  return std::unique_ptr<Datapath>(new Datapath(std::move(impl)));
}

Status Datapath::Impl::load() {
  skel.reset(sebpf_datapath__open());
  if (!skel) return Error::from_errno(errno, "open BPF skeleton");

  if (!config.pin_dir.empty()) {
    SEBPF_RETURN_IF_ERROR(ensure_bpffs_dir(config.pin_dir));
    std::error_code ec;
    fs::create_directories(maps_dir(config), ec);
    fs::create_directories(links_dir(config), ec);
    if (ec) return Error::from_errno(ec.value(), "create " + config.pin_dir);
    // An error (not "no such file") is not taken for "nothing pinned":
    // maps made anew beside state that is there would lose it.
    const std::string meta = maps_dir(config) + "/" + kMetaMapName;
    adopted = fs::exists(meta, ec);
    if (ec) return Error::from_errno(ec.value(), "look for the pinned state at " + meta);
  }
  bool all_maps_adopted = false;
  if (adopted) {
    SEBPF_ASSIGN_OR_RETURN(all_maps_adopted, reuse_pinned_maps());
  } else {
    auto* m = &skel->maps;
    bpf_map__set_max_entries(m->sebpf_cg_attach, config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_if_attach, config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_att_records, 2 * config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_if_names, config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_counters, config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_dhcp_budget, 2 * config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_netns_watch, config.max_attachments);
    bpf_map__set_max_entries(m->sebpf_netns_events, netns_events_bytes(config));
    bpf_map__set_max_entries(m->sebpf_host4, config.max_host_rules);
    bpf_map__set_max_entries(m->sebpf_host6, config.max_host_rules);
    bpf_map__set_max_entries(m->sebpf_learned, learned_buckets(config));
    bpf_map__set_max_entries(m->sebpf_prefix4, config.max_prefix_rules);
    bpf_map__set_max_entries(m->sebpf_prefix6, config.max_prefix_rules);
    bpf_map__set_max_entries(m->sebpf_conntrack, config.max_attachments * SEBPF_TRACK_TABLES);
  }
  skel->rodata->sebpf_flow_idle_tcp_ns =
      static_cast<uint64_t>(std::chrono::nanoseconds(config.flow_idle_tcp).count());
  skel->rodata->sebpf_flow_idle_other_ns =
      static_cast<uint64_t>(std::chrono::nanoseconds(config.flow_idle_other).count());
  netns_isolated_flows = cgroup_skb_has_netns_cookie();
  skel->rodata->sebpf_netns_cookies = netns_isolated_flows ? 1 : 0;
  skel->rodata->sebpf_dhcp_burst = config.dhcp_request_burst;
  skel->rodata->sebpf_dhcp_interval_ns =
      static_cast<uint64_t>(std::chrono::nanoseconds(config.dhcp_request_interval).count());
  skel->rodata->sebpf_dns_port_first = config.dns_port_first;
  skel->rodata->sebpf_dns_port_last = config.dns_port_last;
  // As big as the map is: pinned state keeps the size it was made with.
  const uint32_t buckets = bpf_map__max_entries(skel->maps.sebpf_learned);
  skel->rodata->sebpf_learned_buckets = kLearnedTableSupported ? buckets : 0;

  build_id = program_build_id(*skel);
  if (adopted) reuse_pinned_programs(all_maps_adopted);
  if (int err = sebpf_datapath__load(skel.get()); err != 0) {
    return Error::from_errno(err, "load BPF programs (libbpf printed the kernel's reason above)");
  }
  if (!config.pin_dir.empty() && reused_programs.empty()) pin_programs();

  auto* m = &skel->maps;
  SEBPF_ASSIGN_OR_RETURN(RcuBarrier b, RcuBarrier::create(bpf_map__fd(m->sebpf_barrier)));
  barrier.emplace(std::move(b));
  table = std::make_unique<AttachmentTable>(
      AttachmentMapFds{bpf_map__fd(m->sebpf_cg_attach), bpf_map__fd(m->sebpf_if_attach),
                       bpf_map__fd(m->sebpf_att_records), bpf_map__fd(m->sebpf_counters),
                       bpf_map__fd(m->sebpf_dhcp_budget), bpf_map__fd(m->sebpf_netns_watch),
                       bpf_map__fd(m->sebpf_meta)},
      config.max_attachments, *barrier);
  if (kLearnedTableSupported) {
    SEBPF_RETURN_IF_ERROR(learned_memory.map(bpf_map__fd(m->sebpf_learned), buckets));
    learned = std::make_unique<LearnedTable>(learned_memory.buckets(), config.max_host_rules);
  }
  rules = std::make_unique<RuleStore>(
      RuleMapFds{bpf_map__fd(m->sebpf_host4), bpf_map__fd(m->sebpf_host6),
                 bpf_map__fd(m->sebpf_prefix4), bpf_map__fd(m->sebpf_prefix6)},
      learned.get());
  flow_tables = std::make_unique<FlowTables>(
      bpf_map__fd(m->sebpf_conntrack), config.max_attachments, config.max_flows_per_attachment);
  auto* p = &skel->progs;
  std::vector<CgroupProgram> cgroup_programs;
  for (const bpf_program* prog :
       {p->sebpf_connect4, p->sebpf_connect6, p->sebpf_sendmsg4, p->sebpf_sendmsg6,
        p->sebpf_recvmsg4, p->sebpf_recvmsg6, p->sebpf_getpeername4, p->sebpf_getpeername6,
        p->sebpf_cg_out, p->sebpf_cg_in, p->sebpf_setsockopt, p->sebpf_sock_create}) {
    cgroup_programs.push_back(
        {bpf_program__name(prog), program_fd(prog), bpf_program__expected_attach_type(prog)});
  }
  cgroup_hooks = std::make_unique<CgroupHooks>(std::move(cgroup_programs), links_dir(config));
  tc_owners = std::make_unique<ProgramOwnership>(
      std::vector<int>{program_fd(p->sebpf_tc_guard), program_fd(p->sebpf_tc_track),
                       program_fd(p->sebpf_tc_packet_sockets)});
  tc_hooks = std::make_unique<TcHooks>(program_fd(p->sebpf_tc_guard), program_fd(p->sebpf_tc_track),
                                       config.tc_handle, config.tc_priority,
                                       bpf_map__fd(m->sebpf_if_names), *tc_owners);
  packet_socket_guard = std::make_unique<PacketSocketGuard>(
      program_fd(p->sebpf_tc_packet_sockets), config.tc_handle + 1, config.tc_priority, *tc_owners);

  if (adopted) {
    SEBPF_RETURN_IF_ERROR(adopt_attachments());
    // Every link and filter runs this build's programs now.
    unpin_other_builds_programs();
    return ok_status();
  }

  const uint32_t zero = 0;
  const sebpf_meta meta{
      SEBPF_ABI_VERSION,       config.max_attachments,          config.max_host_rules,
      config.max_prefix_rules, config.max_flows_per_attachment, 1,
      own_netns_ino()};
  if (bpf_map_update_elem(bpf_map__fd(m->sebpf_meta), &zero, &meta, BPF_ANY) != 0) {
    return Error::from_errno(errno, "write meta map");
  }
  if (config.pin_dir.empty()) return ok_status();
  SEBPF_RETURN_IF_ERROR(pin_maps());
  // Left by state removed in part (programs pinned, maps not): nothing of
  // this process runs them.
  unpin_other_builds_programs();
  return ok_status();
}

// Hooks off first, then the record, then its rules: a packet never finds
// programs attached and no policy (which would fail closed, but needlessly).
Status Datapath::Impl::remove_attachment(const AttachmentRecord& record, bool unhook) {
  const Attachment a = to_attachment(record);
  if (record.key.kind == TargetKind::kCgroup) {
    SEBPF_RETURN_IF_ERROR(cgroup_hooks->detach(record.key.id));
  } else if (unhook) {
    SEBPF_RETURN_IF_ERROR(tc_hooks->detach(static_cast<uint32_t>(record.key.id), a.direction));
  } else {
    tc_hooks->forget(static_cast<uint32_t>(record.key.id));
  }
  SEBPF_RETURN_IF_ERROR(table->erase(record.key));
  table->release_slot(record.value.slot);
  return rules->erase_ruleset(record.value.ruleset);
}

Result<uint32_t> Datapath::Impl::take_slot() {
  SEBPF_ASSIGN_OR_RETURN(uint32_t slot, table->take_slot());
  if (Status s = flow_tables->prepare(slot, table->slots_in_use()); !s.ok()) {
    table->release_slot(slot);
    return s.error();
  }
  return slot;
}

// The record goes in before the hooks, so the first packet already finds
// its policy; on failure both are undone.
Result<Attachment> Datapath::Impl::finish_attach(const AttachmentKey& key, sebpf_attachment value,
                                                 const AttachOptions& options,
                                                 const std::function<Status()>& hook_up) {
  SEBPF_ASSIGN_OR_RETURN(auto existing, table->read(key));
  if (existing) return Error(Errc::kAlreadyExists, to_string(key) + " is attached already");
  if (static_cast<uint8_t>(options.mode) >= SEBPF_MODE_COUNT) {
    return Error(Errc::kInvalidArgument, "unknown mode");
  }
  value.mode = static_cast<uint8_t>(options.mode);
  SEBPF_RETURN_IF_ERROR(encode_dns_endpoint(options.dns, value));
  SEBPF_ASSIGN_OR_RETURN(value.serial, table->next_id());
  SEBPF_ASSIGN_OR_RETURN(value.ruleset, table->next_id());
  // The initial rules go in before the attachment exists, so its first
  // packet already sees them (and no rule set needs swapping out).
  if (Status s = rules->write_all(value.ruleset, merge_rules(options.rules)); !s.ok()) {
    (void)rules->erase_ruleset(value.ruleset);
    return s.error();
  }
  auto slot = take_slot();
  if (!slot.ok()) {
    (void)rules->erase_ruleset(value.ruleset);
    return slot.error();
  }
  value.slot = *slot;
  if (Status s = table->create(key, value); !s.ok()) {
    table->release_slot(value.slot);
    (void)rules->erase_ruleset(value.ruleset);
    return s.error();
  }
  if (Status s = hook_up(); !s.ok()) {
    (void)table->erase(key);
    table->release_slot(value.slot);
    (void)rules->erase_ruleset(value.ruleset);
    return s.error();
  }
  return to_attachment({key, value});
}

const Config& Datapath::config() const { return impl_->config; }
bool Datapath::adopted() const { return impl_->adopted; }
bool Datapath::programs_reused() const { return !impl_->reused_programs.empty(); }
bool Datapath::netns_isolated_flows() const { return impl_->netns_isolated_flows; }
const std::vector<AdoptionNote>& Datapath::adoption_notes() const { return impl_->notes; }

Result<Attachment> Datapath::attach_cgroup(const std::string& path, const AttachOptions& options) {
  SEBPF_ASSIGN_OR_RETURN(CgroupDir cgroup, open_cgroup(path));
  const AttachmentKey key{TargetKind::kCgroup, cgroup.id};
  sebpf_attachment value{};
  value.flags = SEBPF_ATT_F_CGROUP;
  auto result = impl_->finish_attach(
      key, value, options, [&] { return impl_->cgroup_hooks->attach(cgroup.id, cgroup.fd.get()); });
  if (!result.ok()) return result.error().wrap("attach cgroup " + path);
  return result;
}

Result<Attachment> Datapath::attach_interface(const std::string& name,
                                              const AttachOptions& options) {
  SEBPF_ASSIGN_OR_RETURN(InterfaceInfo iface, lookup_interface(name));
  const AttachmentKey key{TargetKind::kInterface, iface.ifindex};
  sebpf_attachment value{};
  if (iface.l3_device) value.flags |= SEBPF_ATT_F_L3_DEVICE;
  if (options.direction == TcDirection::kEgress) value.flags |= SEBPF_ATT_F_GUARD_EGRESS;
  auto result = impl_->finish_attach(key, value, options, [&] {
    return impl_->tc_hooks->attach(iface.ifindex, options.direction);
  });
  if (!result.ok()) return result.error().wrap("attach interface " + name);
  return result;
}

Status Datapath::detach(const AttachmentKey& key) {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  return impl_->remove_attachment({key, value});
}

Result<RestoredFilters> Datapath::restore_interface_filters(const AttachmentKey& key) {
  if (key.kind != TargetKind::kInterface) return RestoredFilters{};
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  const auto ifindex = static_cast<uint32_t>(key.id);
  if (!impl_->tc_hooks->check_same_interface(ifindex).empty()) return RestoredFilters{};
  return impl_->tc_hooks->restore(ifindex, to_attachment({key, value}).direction);
}

bool Datapath::runs_our_tc_program(uint32_t program_id) const {
  return impl_->tc_owners->is_ours(program_id);
}

Result<Attachment> Datapath::attachment(const AttachmentKey& key) const {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  return to_attachment({key, value});
}

Result<std::vector<Attachment>> Datapath::attachments() const {
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, impl_->table->all());
  std::vector<Attachment> out;
  out.reserve(records.size());
  for (const auto& r : records) out.push_back(to_attachment(r));
  return out;
}

Status Datapath::set_mode(const AttachmentKey& key, Mode mode) {
  if (static_cast<uint8_t>(mode) >= SEBPF_MODE_COUNT) {
    return Error(Errc::kInvalidArgument, "unknown mode");
  }
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  value.mode = static_cast<uint8_t>(mode);
  return impl_->table->replace(key, value);
}

Status Datapath::set_dns_endpoint(const AttachmentKey& key, const DnsEndpoint& dns) {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  SEBPF_RETURN_IF_ERROR(encode_dns_endpoint(dns, value));
  return impl_->table->replace(key, value);
}

Status Datapath::watch_workload_netns(const AttachmentKey& key, uint64_t netns_cookie) {
  if (key.kind != TargetKind::kCgroup) {
    return Error(Errc::kInvalidArgument, "only cgroup attachments have a workload namespace");
  }
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment value, impl_->table->read_existing(key));
  return impl_->table->watch_netns(value.slot, netns_cookie);
}

Result<UniqueFd> Datapath::netns_events_map() const {
  UniqueFd fd(fcntl(bpf_map__fd(impl_->skel->maps.sebpf_netns_events), F_DUPFD_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "duplicate the namespace reports' map");
  return fd;
}

Status Datapath::add_rule(const AttachmentKey& key, const Rule& rule) {
  return add_rules(key, std::span<const Rule>(&rule, 1));
}

Status Datapath::add_rules(const AttachmentKey& key, std::span<const Rule> rules) {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  // Inline: the DNS proxy's learning calls this once per loop turn.
  absl::InlinedVector<RuleEntry, 32> entries;
  for (const Rule& rule : rules) {
    RuleEntry entry{rule.prefix, sebpf_rule{}};
    // Merge into what the prefix holds: the other action's side stays. A
    // learned rule is only ever written where no rule of the user's is (see
    // Rule::learned), so it replaces at most an earlier learned one: no
    // read, which would be a system call per address the DNS proxy learns.
    if (!rule.learned) {
      SEBPF_ASSIGN_OR_RETURN(auto existing, impl_->rules->read(att.ruleset, rule.prefix));
      entry.value = existing.value_or(sebpf_rule{});
    }
    apply_rule(entry.value, rule);
    entries.push_back(entry);
  }
  return impl_->rules->write_all(att.ruleset, entries);
}

Status Datapath::remove_rule(const AttachmentKey& key, const net::IpPrefix& prefix,
                             std::optional<Action> action) {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  SEBPF_ASSIGN_OR_RETURN(auto existing, impl_->rules->read(att.ruleset, prefix));
  auto missing = [&] {
    return Error(Errc::kNotFound, "no " + (action ? std::string(action_name(*action)) + " " : "") +
                                      "rule for " + prefix.to_string() + " on " + to_string(key));
  };
  if (!existing) return missing();
  sebpf_rule value = *existing;
  if (!action || *action == Action::kAllow) value.allow_until = 0;
  if (!action || *action == Action::kDeny) value.deny_until = 0;
  if (value.allow_until == existing->allow_until && value.deny_until == existing->deny_until) {
    return missing();
  }
  if (value.allow_until == 0 && value.deny_until == 0) {
    return impl_->rules->erase(att.ruleset, prefix);
  }
  return impl_->rules->write(att.ruleset, {prefix, value});
}

Result<size_t> Datapath::forget_learned_connections(const AttachmentKey& key,
                                                    std::span<const net::IpAddress> hosts) {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  // As the programs key destinations: IPv4 v4-mapped, and an IPv4 host
  // also as reached through NAT64 (64:ff9b::/96), which its rule allows.
  std::vector<std::array<uint8_t, 16>> remote;
  for (const net::IpAddress& host : hosts) {
    if (host.family() == net::Family::kIPv6) {
      remote.push_back(host.bytes());
      continue;
    }
    std::array<uint8_t, 16> mapped{};
    mapped[10] = mapped[11] = 0xff;
    std::copy_n(host.bytes().begin(), 4, mapped.begin() + 12);
    std::array<uint8_t, 16> nat64{0x00, 0x64, 0xff, 0x9b};
    std::copy_n(host.bytes().begin(), 4, nat64.begin() + 12);
    remote.push_back(mapped);
    remote.push_back(nat64);
  }
  return impl_->flow_tables->forget_learned_connections(att.slot, remote);
}

Status Datapath::replace_policy(const AttachmentKey& key, Mode mode, std::span<const Rule> rules) {
  if (static_cast<uint8_t>(mode) >= SEBPF_MODE_COUNT) {
    return Error(Errc::kInvalidArgument, "unknown mode");
  }
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  // Build the new rule set beside the old one, then flip the attachment to
  // it with one map update: packets see one rule set or the other.
  SEBPF_ASSIGN_OR_RETURN(uint32_t fresh, impl_->table->next_id());
  const std::vector<RuleEntry> entries = merge_rules(rules);
  if (Status s = impl_->rules->write_all(fresh, entries); !s.ok()) {
    (void)impl_->rules->erase_ruleset(fresh);
    return s.error().wrap("replace policy of " + to_string(key) + " (old policy kept)");
  }
  const uint32_t old = att.ruleset;
  att.ruleset = fresh;
  att.mode = static_cast<uint8_t>(mode);
  if (Status s = impl_->table->replace(key, att); !s.ok()) {
    (void)impl_->rules->erase_ruleset(fresh);
    return s.error();
  }
  // The new policy is in force from here on: nothing below may report
  // otherwise. A packet that read the attachment just before the switch
  // may still be looking up rules of the old set, so the old set goes only
  // after a grace period; if waiting for one fails, sweep() reclaims it
  // later (by then no packet can still be reading it).
  if (!impl_->barrier->wait().ok()) return ok_status();
  (void)impl_->rules->erase_ruleset(old);
  return ok_status();
}

namespace {

// The rules of one rule set's entries: one per prefix and action.
std::vector<Rule> rules_of(std::span<const RuleEntry> entries) {
  std::vector<Rule> out;
  for (const RuleEntry& e : entries) {
    for (Rule& r : split_entry(e.prefix, e.value)) out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Rule& a, const Rule& b) {
    return std::tie(a.prefix, a.action) < std::tie(b.prefix, b.action);
  });
  // A host learned before the learned-host table existed and learned again
  // since is in both places until the old copy expires; the filter allows
  // it until the later of the two, and so must this list say (the daemon
  // rebuilds what it has learned from it after a restart).
  const auto later = [](const std::optional<BootClock::time_point>& a,
                        const std::optional<BootClock::time_point>& b) {
    return !a || !b ? std::optional<BootClock::time_point>() : std::max(a, b);
  };
  std::vector<Rule> merged;
  merged.reserve(out.size());
  for (Rule& r : out) {
    if (!merged.empty() && merged.back().prefix == r.prefix && merged.back().action == r.action) {
      merged.back().expires = later(merged.back().expires, r.expires);
      merged.back().learned = merged.back().learned && r.learned;
      continue;
    }
    merged.push_back(std::move(r));
  }
  return merged;
}

}  // namespace

Result<std::vector<Rule>> Datapath::rules(const AttachmentKey& key) const {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  SEBPF_ASSIGN_OR_RETURN(std::vector<RuleEntry> entries, impl_->rules->read_all(att.ruleset));
  return rules_of(entries);
}

Result<std::map<AttachmentKey, std::vector<Rule>>> Datapath::rules_of_all() const {
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, impl_->table->all());
  SEBPF_ASSIGN_OR_RETURN(std::vector<RuleStore::Owned> all, impl_->rules->read_everything());
  std::unordered_map<uint32_t, std::vector<RuleEntry>> by_ruleset;
  for (RuleStore::Owned& owned : all) by_ruleset[owned.ruleset].push_back(std::move(owned.entry));
  std::map<AttachmentKey, std::vector<Rule>> out;
  for (const AttachmentRecord& r : records) out[r.key] = rules_of(by_ruleset[r.value.ruleset]);
  return out;
}

Result<Counters> Datapath::counters(const AttachmentKey& key) const {
  SEBPF_ASSIGN_OR_RETURN(sebpf_attachment att, impl_->table->read_existing(key));
  return impl_->table->counters(att.slot);
}

Result<size_t> Datapath::sweep() {
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, impl_->table->all());
  std::set<uint32_t> in_use;
  for (const auto& r : records) in_use.insert(r.value.ruleset);
  SEBPF_ASSIGN_OR_RETURN(std::vector<RuleStore::Owned> all, impl_->rules->read_everything());
  const uint64_t now = static_cast<uint64_t>(BootClock::now().time_since_epoch().count());
  size_t removed = 0;
  for (const auto& owned : all) {
    const bool orphan = in_use.count(owned.ruleset) == 0;
    const bool expired =
        owned.entry.value.allow_until <= now && owned.entry.value.deny_until <= now;
    if (!orphan && !expired) continue;
    SEBPF_RETURN_IF_ERROR(impl_->rules->erase_owned(owned));
    ++removed;
  }
  // The next attaches take the lowest free slots: those keep their tables
  // and attach without waiting for a grace period. One slot a sweep: its
  // tables take three grace periods (~25 ms) to drop, and the caller
  // (the daemon) holds its lock meanwhile.
  constexpr uint32_t kSlotsTrimmedPerSweep = 1;
  SEBPF_ASSIGN_OR_RETURN(size_t dropped,
                         impl_->flow_tables->trim(impl_->table->slots_in_use(),
                                                  FlowTables::kTablesAhead, kSlotsTrimmedPerSweep));
  return removed + dropped * SEBPF_TRACK_TABLES;
}

Status Datapath::guard_packet_sockets(int netns_fd) {
  SEBPF_RETURN_IF_ERROR(impl_->packet_socket_guard->guard(netns_fd));
  if (netns_fd < 0) impl_->guarded_own_netns = true;
  return ok_status();
}

bool Datapath::guards_own_namespace() const { return impl_->guarded_own_netns; }

Status Datapath::guard_packet_sockets_on(uint32_t ifindex) {
  return impl_->packet_socket_guard->guard_interface(ifindex);
}

Result<std::string> Datapath::restore_packet_socket_filter(uint32_t ifindex) {
  if (!impl_->guarded_own_netns) return std::string();
  return impl_->packet_socket_guard->restore_interface(ifindex);
}

void Datapath::forget_interface(uint32_t ifindex) {
  impl_->packet_socket_guard->forget_interface(ifindex);
}

Result<size_t> Datapath::unguard_packet_sockets(int netns_fd) {
  if (netns_fd < 0) impl_->guarded_own_netns = false;
  return impl_->packet_socket_guard->unguard(netns_fd);
}

Status Datapath::destroy() {
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, impl_->table->all());
  for (const auto& r : records) SEBPF_RETURN_IF_ERROR(impl_->remove_attachment(r));
  (void)unguard_packet_sockets(-1);
  if (impl_->config.pin_dir.empty()) return ok_status();
  std::error_code ec;
  fs::remove_all(impl_->config.pin_dir, ec);
  if (ec) return Error::from_errno(ec.value(), "remove " + impl_->config.pin_dir);
  return ok_status();
}

int Datapath::endpoint_socket_filter() const {
  return impl_->program_fd(impl_->skel->progs.sebpf_endpoint_filter);
}

int Datapath::program_fd(Program program) const {
  auto* p = &impl_->skel->progs;
  switch (program) {
    case Program::kConnect4:
      return impl_->program_fd(p->sebpf_connect4);
    case Program::kConnect6:
      return impl_->program_fd(p->sebpf_connect6);
    case Program::kSendmsg4:
      return impl_->program_fd(p->sebpf_sendmsg4);
    case Program::kSendmsg6:
      return impl_->program_fd(p->sebpf_sendmsg6);
    case Program::kCgroupEgress:
      return impl_->program_fd(p->sebpf_cg_out);
    case Program::kCgroupIngress:
      return impl_->program_fd(p->sebpf_cg_in);
    case Program::kTcGuard:
      return impl_->program_fd(p->sebpf_tc_guard);
    case Program::kTcTrack:
      return impl_->program_fd(p->sebpf_tc_track);
    case Program::kTcPacketSockets:
      break;
  }
  return impl_->program_fd(p->sebpf_tc_packet_sockets);
}

}  // namespace sebpf::datapath
