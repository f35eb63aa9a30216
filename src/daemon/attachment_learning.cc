// AttachmentManager's learning from DNS answers: writing the hosts an
// answer names into the attachment's allow rules within its share of the
// table, what taught them (kept across restarts), and taking them back
// when a policy change refuses the names that taught them.

#include <algorithm>
#include <map>
#include <set>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "daemon/attachment_manager.h"
#include "dns/name_policy.h"
#include "state/state_file.h"

namespace sebpf::daemon {

namespace {

// How much longer than an answer's TTL a learned host is written to be held
// (see learn()).
constexpr std::chrono::seconds kLearnedHostSlack{1};

dns::NamePolicy name_policy_of(const Policy& policy) {
  dns::NamePolicy names;
  names.mode = policy.dns_mode;
  // Names in a stored policy were normalized when they were added.
  for (const DomainRule& d : policy.domains) (void)names.rules.add(d.name, d.action);
  return names;
}

// An answer's addresses share one chain: the same view of it, which is
// quicker to tell than equal text.
bool same_view(std::string_view a, std::string_view b) {
  return a.data() == b.data() && a.size() == b.size();
}

}  // namespace

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
    return no_attachment_locked(number);
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
      if (!same_view(a->chain, last_chain)) {
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
    if (same_view(a->chain, last_chain)) continue;
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

}  // namespace sebpf::daemon
