// AttachmentManager's policy calls: reading a policy, and changing it (a
// mode, a rule, or the whole policy) in the kernel and the state file
// together, or not at all.

#include "daemon/attachment_manager.h"
#include "datapath/rule_codec.h"

namespace sebpf::daemon {

using datapath::Mode;

Result<Policy> AttachmentManager::get_policy(uint64_t number) const {
  SEBPF_ASSIGN_OR_RETURN(AttachmentRecord r, get(number));
  drop_expired(r.policy, WallClock::now());
  return r.policy;
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
  if (auto fits = check_policy_bounds(record->policy, updated, config_.policy_limits());
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

}  // namespace sebpf::daemon
