#include "datapath/rule_store.h"

#include "datapath/bpf_map_util.h"

namespace sebpf::datapath {
namespace {

constexpr const char* kHostFullHint =
    "the host rule table is full (it is shared by all attachments); raise max_host_rules";
constexpr const char* kPrefixFullHint =
    "the prefix rule table is full (it is shared by all attachments); raise max_prefix_rules";

// Calls f(fd, key) with the map and key image for a prefix.
template <typename F>
auto with_key(const RuleMapFds& fds, uint32_t ruleset, const net::IpPrefix& prefix, F&& f) {
  switch (rule_map_for(prefix)) {
    case RuleMap::kHost4:
      return f(fds.host4, host4_key(ruleset, prefix), kHostFullHint);
    case RuleMap::kHost6:
      return f(fds.host6, host6_key(ruleset, prefix), kHostFullHint);
    case RuleMap::kPrefix4:
      return f(fds.prefix4, prefix4_key(ruleset, prefix), kPrefixFullHint);
    case RuleMap::kPrefix6:
      break;
  }
  return f(fds.prefix6, prefix6_key(ruleset, prefix), kPrefixFullHint);
}

// A learned-host table entry as the host maps would hold it.
RuleEntry entry_of(const LearnedTable::Entry& e) {
  sebpf_rule value{};
  value.allow_until = e.until;
  value.flags = SEBPF_RULE_ALLOW_LEARNED;
  value.prefixlen = static_cast<uint32_t>(e.address.max_prefix_length());
  return {*net::IpPrefix::make(e.address, e.address.max_prefix_length()), value};
}

template <typename K>
Status collect(int fd, std::vector<RuleStore::Owned>& out) {
  SEBPF_ASSIGN_OR_RETURN(std::vector<K> keys, map_keys<K>(fd));
  for (const K& key : keys) {
    SEBPF_ASSIGN_OR_RETURN(auto value, (map_lookup<K, sebpf_rule>(fd, key)));
    if (!value) continue;  // removed since the walk
    SEBPF_ASSIGN_OR_RETURN(net::IpPrefix prefix, prefix_of(key));
    out.push_back({key.ruleset, {prefix, *value}});
  }
  return ok_status();
}

template <typename K>
Status erase_matching(int fd, uint32_t ruleset) {
  SEBPF_ASSIGN_OR_RETURN(std::vector<K> keys, map_keys<K>(fd));
  for (const K& key : keys) {
    if (key.ruleset != ruleset) continue;
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
      return Error::from_errno(errno, "delete rule");
    }
  }
  return ok_status();
}

// Hash maps take batched updates; a chunk keeps the syscall's copy small.
template <typename K>
Status write_batch(int fd, uint32_t ruleset, std::span<const RuleEntry> entries,
                   K (*make_key)(uint32_t, const net::IpPrefix&)) {
  constexpr size_t kChunk = 4096;
  std::vector<K> keys;
  std::vector<sebpf_rule> values;
  for (size_t start = 0; start < entries.size(); start += kChunk) {
    const size_t n = std::min(kChunk, entries.size() - start);
    keys.clear();
    values.clear();
    for (size_t i = start; i < start + n; ++i) {
      keys.push_back(make_key(ruleset, entries[i].prefix));
      values.push_back(entries[i].value);
    }
    __u32 count = static_cast<__u32>(n);
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
    // One rule (a DNS answer's address, usually) is cheaper as a plain
    // update: the batch call allocates and copies buffers in the kernel.
    const int written = n == 1
                            ? bpf_map_update_elem(fd, keys.data(), values.data(), BPF_ANY)
                            : bpf_map_update_batch(fd, keys.data(), values.data(), &count, &opts);
    if (written != 0) return map_error(errno, "write rules", kHostFullHint);
  }
  return ok_status();
}

}  // namespace

bool RuleStore::goes_to_table(const RuleEntry& entry) const {
  return learned_ != nullptr && (entry.value.flags & SEBPF_RULE_ALLOW_LEARNED) != 0 &&
         entry.value.deny_until == 0 && entry.prefix.is_host();
}

Result<std::optional<sebpf_rule>> RuleStore::read(uint32_t ruleset,
                                                  const net::IpPrefix& prefix) const {
  SEBPF_ASSIGN_OR_RETURN(
      std::optional<sebpf_rule> value,
      with_key(fds_, ruleset, prefix,
               [](int fd, const auto& key, const char*) -> Result<std::optional<sebpf_rule>> {
                 return map_lookup<std::decay_t<decltype(key)>, sebpf_rule>(fd, key);
               }));
  // A trie lookup answers with the longest prefix that contains the key,
  // which may be a shorter one: only an entry of this very length is ours.
  if (value && value->prefixlen != static_cast<uint32_t>(prefix.length())) {
    return std::optional<sebpf_rule>();
  }
  if (!value && learned_ != nullptr && prefix.is_host()) {
    if (auto until = learned_->get(ruleset, prefix.address())) {
      return std::optional<sebpf_rule>(entry_of({ruleset, prefix.address(), *until}).value);
    }
  }
  return value;
}

Status RuleStore::write(uint32_t ruleset, const RuleEntry& entry) {
  if (goes_to_table(entry)) {
    return learned_->put(ruleset, entry.prefix.address(), entry.value.allow_until);
  }
  SEBPF_RETURN_IF_ERROR(
      with_key(fds_, ruleset, entry.prefix,
               [&entry](int fd, const auto& key, const char* full_hint) -> Status {
                 if (bpf_map_update_elem(fd, &key, &entry.value, BPF_ANY) != 0) {
                   return map_error(errno, "write rule " + entry.prefix.to_string(), full_hint);
                 }
                 return ok_status();
               }));
  // A rule of the user's on a learned host replaces the learned allow.
  if (learned_ != nullptr && entry.prefix.is_host()) {
    learned_->erase(ruleset, entry.prefix.address());
  }
  return ok_status();
}

Status RuleStore::write_all(uint32_t ruleset, std::span<const RuleEntry> entries) {
  for (const RuleEntry& entry : entries) {
    if (goes_to_table(entry)) learned_->prefetch(ruleset, entry.prefix.address());
  }
  std::vector<RuleEntry> host4, host6;
  for (const RuleEntry& entry : entries) {
    if (goes_to_table(entry)) {
      SEBPF_RETURN_IF_ERROR(
          learned_->put(ruleset, entry.prefix.address(), entry.value.allow_until));
      continue;
    }
    switch (rule_map_for(entry.prefix)) {
      case RuleMap::kHost4:
        host4.push_back(entry);
        break;
      case RuleMap::kHost6:
        host6.push_back(entry);
        break;
      default:
        SEBPF_RETURN_IF_ERROR(write(ruleset, entry));
        break;
    }
  }
  SEBPF_RETURN_IF_ERROR(write_batch(fds_.host4, ruleset, host4, &host4_key));
  SEBPF_RETURN_IF_ERROR(write_batch(fds_.host6, ruleset, host6, &host6_key));
  if (learned_ != nullptr) {
    for (const auto* hosts : {&host4, &host6}) {
      for (const RuleEntry& entry : *hosts) learned_->erase(ruleset, entry.prefix.address());
    }
  }
  return ok_status();
}

Status RuleStore::erase(uint32_t ruleset, const net::IpPrefix& prefix) {
  if (learned_ != nullptr && prefix.is_host()) learned_->erase(ruleset, prefix.address());
  return erase_from_maps(ruleset, prefix);
}

Status RuleStore::erase_owned(const Owned& owned) {
  if (owned.in_learned_table) {
    learned_->erase(owned.ruleset, owned.entry.prefix.address());
    return ok_status();
  }
  return erase_from_maps(owned.ruleset, owned.entry.prefix);
}

Status RuleStore::erase_from_maps(uint32_t ruleset, const net::IpPrefix& prefix) {
  return with_key(fds_, ruleset, prefix, [&prefix](int fd, const auto& key, const char*) -> Status {
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
      return Error::from_errno(errno, "delete rule " + prefix.to_string());
    }
    return ok_status();
  });
}

Result<std::vector<RuleStore::Owned>> RuleStore::read_everything() const {
  std::vector<Owned> all;
  SEBPF_RETURN_IF_ERROR(collect<sebpf_host4_key>(fds_.host4, all));
  SEBPF_RETURN_IF_ERROR(collect<sebpf_host6_key>(fds_.host6, all));
  SEBPF_RETURN_IF_ERROR(collect<sebpf_prefix4_key>(fds_.prefix4, all));
  SEBPF_RETURN_IF_ERROR(collect<sebpf_prefix6_key>(fds_.prefix6, all));
  if (learned_ != nullptr) {
    for (const LearnedTable::Entry& e : learned_->entries())
      all.push_back({e.ruleset, entry_of(e), /*in_learned_table=*/true});
  }
  return all;
}

Result<std::vector<RuleEntry>> RuleStore::read_all(uint32_t ruleset) const {
  SEBPF_ASSIGN_OR_RETURN(std::vector<Owned> all, read_everything());
  std::vector<RuleEntry> mine;
  for (Owned& owned : all) {
    if (owned.ruleset == ruleset) mine.push_back(std::move(owned.entry));
  }
  return mine;
}

Status RuleStore::erase_ruleset(uint32_t ruleset) {
  if (learned_ != nullptr) learned_->erase_ruleset(ruleset);
  SEBPF_RETURN_IF_ERROR(erase_matching<sebpf_host4_key>(fds_.host4, ruleset));
  SEBPF_RETURN_IF_ERROR(erase_matching<sebpf_host6_key>(fds_.host6, ruleset));
  SEBPF_RETURN_IF_ERROR(erase_matching<sebpf_prefix4_key>(fds_.prefix4, ruleset));
  return erase_matching<sebpf_prefix6_key>(fds_.prefix6, ruleset);
}

}  // namespace sebpf::datapath
