#include "datapath/attachment_table.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>

#include <cstring>

#include "datapath/bpf_map_util.h"

namespace sebpf::datapath {
namespace {

std::optional<net::IpAddress> v4_or_none(uint32_t addr) {
  if (addr == 0) return std::nullopt;
  return net::IpAddress::v4(addr);
}

std::optional<net::IpAddress> v6_or_none(const uint8_t (&addr)[16]) {
  std::array<uint8_t, 16> bytes{};
  std::memcpy(bytes.data(), addr, 16);
  if (bytes == std::array<uint8_t, 16>{}) return std::nullopt;
  return net::IpAddress::v6(bytes);
}

}  // namespace

Attachment to_attachment(const AttachmentRecord& record) {
  const sebpf_attachment& v = record.value;
  Attachment a;
  a.key = record.key;
  a.slot = v.slot;
  a.serial = v.serial;
  a.mode = static_cast<Mode>(v.mode);
  a.dns.v4 = v4_or_none(v.dns_addr4);
  a.dns.v6 = v6_or_none(v.dns_addr6);
  a.dns.port = ntohs(v.dns_port);
  a.direction = (v.flags & SEBPF_ATT_F_GUARD_EGRESS) ? TcDirection::kEgress : TcDirection::kIngress;
  a.l3_device = (v.flags & SEBPF_ATT_F_L3_DEVICE) != 0;
  return a;
}

Status encode_dns_endpoint(const DnsEndpoint& dns, sebpf_attachment& value) {
  if (dns.v4 && dns.v4->family() != net::Family::kIPv4) {
    return Error(Errc::kInvalidArgument,
                 "dns endpoint v4 address " + dns.v4->to_string() + " is not an IPv4 address");
  }
  if (dns.v6 && dns.v6->family() != net::Family::kIPv6) {
    return Error(Errc::kInvalidArgument,
                 "dns endpoint v6 address " + dns.v6->to_string() + " is not an IPv6 address");
  }
  if ((dns.v4 || dns.v6) && dns.port == 0) {
    return Error(Errc::kInvalidArgument, "dns endpoint has an address but no port");
  }
  if (dns.port != 0 && !dns.v4 && !dns.v6) {
    return Error(Errc::kInvalidArgument, "dns endpoint has a port but no address");
  }
  value.dns_port = htons(dns.port);
  value.dns_addr4 = dns.v4 ? dns.v4->v4_network_order() : 0;
  std::memset(value.dns_addr6, 0, sizeof(value.dns_addr6));
  if (dns.v6) std::memcpy(value.dns_addr6, dns.v6->bytes().data(), 16);
  return ok_status();
}

AttachmentTable::AttachmentTable(AttachmentMapFds fds, uint32_t max_attachments,
                                 const RcuBarrier& barrier)
    : fds_(fds),
      barrier_(barrier),
      slot_used_(max_attachments, false),
      stale_readers_(max_attachments, true) {}

int AttachmentTable::map_for(const AttachmentKey& key) const {
  return key.kind == TargetKind::kCgroup ? fds_.cgroup : fds_.interface;
}

// The cgroup map is keyed by a u64 cgroup id, the interface map by a u32
// ifindex: the two branches differ only in key type.
Result<std::optional<sebpf_att_ref>> AttachmentTable::read_ref(const AttachmentKey& key) const {
  if (key.kind == TargetKind::kCgroup) {
    return map_lookup<uint64_t, sebpf_att_ref>(fds_.cgroup, key.id);
  }
  return map_lookup<uint32_t, sebpf_att_ref>(fds_.interface, static_cast<uint32_t>(key.id));
}

Result<std::optional<sebpf_attachment>> AttachmentTable::read(const AttachmentKey& key) const {
  if (auto cached = read_cache_.find(key); cached != read_cache_.end()) {
    return std::optional<sebpf_attachment>(cached->second);
  }
  SEBPF_ASSIGN_OR_RETURN(auto ref, read_ref(key));
  if (!ref) return std::optional<sebpf_attachment>();
  SEBPF_ASSIGN_OR_RETURN(auto record,
                         (map_lookup<uint32_t, sebpf_attachment>(fds_.records, ref->index)));
  if (!record || record->owner != key.id) {
    return Error(Errc::kInternal, to_string(key) + " points at record " +
                                      std::to_string(ref->index) + ", which is not its own");
  }
  read_cache_[key] = *record;
  return record;
}

Result<sebpf_attachment> AttachmentTable::read_existing(const AttachmentKey& key) const {
  SEBPF_ASSIGN_OR_RETURN(auto value, read(key));
  if (!value) return Error(Errc::kNotFound, to_string(key) + " is not attached");
  return *value;
}

Status AttachmentTable::write_ref(const AttachmentKey& key, sebpf_att_ref ref, uint64_t flags) {
  const uint32_t ifindex = static_cast<uint32_t>(key.id);
  const void* k = key.kind == TargetKind::kCgroup ? static_cast<const void*>(&key.id)
                                                  : static_cast<const void*>(&ifindex);
  if (bpf_map_update_elem(map_for(key), k, &ref, flags) != 0) {
    if (errno == EEXIST)
      return Error(Errc::kAlreadyExists, to_string(key) + " is attached already");
    if (errno == ENOENT) return Error(Errc::kNotFound, to_string(key) + " is not attached");
    return map_error(errno, "write attachment " + to_string(key),
                     "the attachment table is full; raise max_attachments");
  }
  return ok_status();
}

Status AttachmentTable::write_record(uint32_t index, const sebpf_attachment& value) {
  if (bpf_map_update_elem(fds_.records, &index, &value, BPF_ANY) != 0) {
    return Error::from_errno(errno, "write attachment record " + std::to_string(index));
  }
  return ok_status();
}

Status AttachmentTable::quiesce(uint32_t slot) {
  if (slot >= stale_readers_.size()) {
    return Error(Errc::kInternal, "attachment slot " + std::to_string(slot) + " out of range");
  }
  if (!stale_readers_[slot]) return ok_status();
  SEBPF_RETURN_IF_ERROR(barrier_.wait());
  std::fill(stale_readers_.begin(), stale_readers_.end(), false);
  return ok_status();
}

Status AttachmentTable::create(const AttachmentKey& key, sebpf_attachment value) {
  read_cache_.erase(key);
  SEBPF_RETURN_IF_ERROR(quiesce(value.slot));
  value.owner = key.id;
  const uint32_t index = value.slot * 2;
  SEBPF_RETURN_IF_ERROR(write_record(index, value));
  return write_ref(key, {.index = index, .pad = 0}, BPF_NOEXIST);
}

Status AttachmentTable::replace(const AttachmentKey& key, sebpf_attachment value) {
  read_cache_.erase(key);
  SEBPF_ASSIGN_OR_RETURN(auto ref, read_ref(key));
  if (!ref) return Error(Errc::kNotFound, to_string(key) + " is not attached");
  if (ref->index / 2 != value.slot) {
    return Error(Errc::kInternal, to_string(key) + " is in slot " + std::to_string(ref->index / 2) +
                                      ", not " + std::to_string(value.slot));
  }
  SEBPF_RETURN_IF_ERROR(quiesce(value.slot));
  value.owner = key.id;
  const uint32_t other = ref->index ^ 1;
  SEBPF_RETURN_IF_ERROR(write_record(other, value));
  SEBPF_RETURN_IF_ERROR(write_ref(key, {.index = other, .pad = 0}, BPF_EXIST));
  stale_readers_[value.slot] = true;
  return ok_status();
}

Status AttachmentTable::erase(const AttachmentKey& key) {
  read_cache_.erase(key);
  SEBPF_ASSIGN_OR_RETURN(auto ref, read_ref(key));
  if (!ref) return ok_status();
  const uint32_t ifindex = static_cast<uint32_t>(key.id);
  const void* k = key.kind == TargetKind::kCgroup ? static_cast<const void*>(&key.id)
                                                  : static_cast<const void*>(&ifindex);
  if (bpf_map_delete_elem(map_for(key), k) != 0 && errno != ENOENT) {
    return Error::from_errno(errno, "delete attachment " + to_string(key));
  }
  if (ref->index / 2 < stale_readers_.size()) stale_readers_[ref->index / 2] = true;
  return ok_status();
}

Result<std::vector<AttachmentRecord>> AttachmentTable::all() const {
  std::vector<AttachmentRecord> records;
  SEBPF_ASSIGN_OR_RETURN(std::vector<uint64_t> cgroups, map_keys<uint64_t>(fds_.cgroup));
  for (uint64_t id : cgroups) {
    const AttachmentKey key{TargetKind::kCgroup, id};
    SEBPF_ASSIGN_OR_RETURN(auto v, read(key));
    if (v) records.push_back({key, *v});
  }
  SEBPF_ASSIGN_OR_RETURN(std::vector<uint32_t> ifaces, map_keys<uint32_t>(fds_.interface));
  for (uint32_t ifindex : ifaces) {
    const AttachmentKey key{TargetKind::kInterface, ifindex};
    SEBPF_ASSIGN_OR_RETURN(auto v, read(key));
    if (v) records.push_back({key, *v});
  }
  return records;
}

Status AttachmentTable::load_slots() {
  read_cache_.clear();
  std::fill(slot_used_.begin(), slot_used_.end(), false);
  // The process before us may have replaced or erased records moments ago.
  std::fill(stale_readers_.begin(), stale_readers_.end(), true);
  SEBPF_ASSIGN_OR_RETURN(std::vector<AttachmentRecord> records, all());
  for (const auto& r : records) {
    if (r.value.slot < slot_used_.size()) slot_used_[r.value.slot] = true;
  }
  return ok_status();
}

Result<uint32_t> AttachmentTable::take_slot() {
  for (uint32_t slot = 0; slot < slot_used_.size(); ++slot) {
    if (slot_used_[slot]) continue;
    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) return Error::from_errno(-ncpus, "count possible CPUs");
    std::vector<sebpf_counters> zero(static_cast<size_t>(ncpus));
    if (bpf_map_update_elem(fds_.counters, &slot, zero.data(), BPF_ANY) != 0) {
      return Error::from_errno(errno, "reset counters");
    }
    for (uint32_t index : {2 * slot, 2 * slot + 1}) {
      const uint64_t long_past = 0;
      if (bpf_map_update_elem(fds_.dhcp_budget, &index, &long_past, BPF_ANY) != 0) {
        return Error::from_errno(errno, "reset the DHCP budget");
      }
    }
    const sebpf_netns_watch unwatched{};
    if (bpf_map_update_elem(fds_.netns_watch, &slot, &unwatched, BPF_ANY) != 0) {
      return Error::from_errno(errno, "reset the watched network namespace");
    }
    slot_used_[slot] = true;
    return slot;
  }
  return Error(Errc::kResourceExhausted,
               "all " + std::to_string(slot_used_.size()) +
                   " attachment slots are in use; detach something or raise max_attachments");
}

void AttachmentTable::release_slot(uint32_t slot) {
  if (slot < slot_used_.size()) slot_used_[slot] = false;
}

Status AttachmentTable::watch_netns(uint32_t slot, uint64_t cookie) {
  // The time of the last report stays: were it reset, a workload that
  // enters a new namespace again and again would have each move reported
  // at once, and so make the daemon move its endpoint as fast as it
  // makes namespaces; kept, once a second at most. (A program's report
  // between the read and the write is the one time lost: harmless.)
  sebpf_netns_watch watch{};
  if (bpf_map_lookup_elem(fds_.netns_watch, &slot, &watch) != 0) {
    return Error::from_errno(errno, "read the watched network namespace");
  }
  watch.cookie = cookie;
  if (bpf_map_update_elem(fds_.netns_watch, &slot, &watch, BPF_ANY) != 0) {
    return Error::from_errno(errno, "set the watched network namespace");
  }
  return ok_status();
}

Result<uint32_t> AttachmentTable::next_id() {
  const uint32_t zero = 0;
  sebpf_meta meta{};
  if (bpf_map_lookup_elem(fds_.meta, &zero, &meta) != 0) {
    return Error::from_errno(errno, "read meta map");
  }
  if (meta.next_id == 0) meta.next_id = 1;  // 0 is never a valid id
  // Wrapping would hand out ids still in use (rule sets, serials that flows
  // and the daemon's records refer to): refuse instead. Four billion
  // attaches and policy replacements on one pinned state is far beyond use.
  if (meta.next_id == UINT32_MAX) {
    return Error(Errc::kResourceExhausted,
                 "the datapath has used up its 32-bit ids; detach everything (destroy) to start "
                 "afresh");
  }
  const uint32_t id = meta.next_id++;
  if (bpf_map_update_elem(fds_.meta, &zero, &meta, BPF_ANY) != 0) {
    return Error::from_errno(errno, "write meta map");
  }
  return id;
}

Result<Counters> AttachmentTable::counters(uint32_t slot) const {
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return Error::from_errno(-ncpus, "count possible CPUs");
  std::vector<sebpf_counters> per_cpu(static_cast<size_t>(ncpus));
  if (bpf_map_lookup_elem(fds_.counters, &slot, per_cpu.data()) != 0) {
    return Error::from_errno(errno, "read counters");
  }
  Counters total;
  for (const auto& c : per_cpu) {
    for (int h = 0; h < SEBPF_HOOK_COUNT; ++h) {
      for (int r = 0; r < SEBPF_REASON_COUNT; ++r) total.count[h][r] += c.count[h][r];
    }
  }
  return total;
}

}  // namespace sebpf::datapath
