#include "daemon/policy_model.h"

#include <algorithm>
#include <set>
#include <utility>

namespace sebpf::daemon {

using datapath::Action;

Policy policy_from_spec(const policy::PolicySpec& spec) {
  Policy p;
  p.mode = spec.mode;
  p.dns_mode = spec.dns_mode;
  // Repeats are found with sets, not upsert_*'s scan: a file may hold tens
  // of thousands of rules, and a scan per rule is quadratic.
  std::set<std::pair<net::IpPrefix, Action>> cidrs;
  const auto add_cidrs = [&](const std::vector<net::IpPrefix>& prefixes, Action action) {
    for (const auto& prefix : prefixes) {
      if (cidrs.emplace(prefix, action).second) p.cidrs.push_back({prefix, action, std::nullopt});
    }
  };
  add_cidrs(spec.allow_cidrs, Action::kAllow);
  add_cidrs(spec.deny_cidrs, Action::kDeny);
  std::set<std::pair<std::string_view, Action>> domains;
  const auto add_domains = [&](const std::vector<std::string>& names, Action action) {
    for (const auto& name : names) {
      if (domains.emplace(name, action).second) p.domains.push_back({name, action});
    }
  };
  add_domains(spec.allow_domains, Action::kAllow);
  add_domains(spec.deny_domains, Action::kDeny);
  return p;
}

namespace {

// A policy may hold `most` rules of a kind, and more only if it held as
// many already (the cap was lowered since): it may shed them, never gain.
Status check_rule_count(size_t before, size_t after, size_t most, const char* rules,
                        const char* setting) {
  if (after <= most || after <= before) return ok_status();
  return Error(Errc::kResourceExhausted, "the policy would hold " + std::to_string(after) + " " +
                                             rules + ", more than " + std::to_string(most) + " (" +
                                             setting + ")");
}

}  // namespace

Status check_domain_rule_count(const Policy& before, const Policy& after, size_t most) {
  return check_rule_count(before.domains.size(), after.domains.size(), most, "domain rules",
                          "dns.max_domain_rules");
}

Status check_cidr_rule_count(const Policy& before, const Policy& after, size_t most) {
  if (most == 0) return ok_status();
  return check_rule_count(before.cidrs.size(), after.cidrs.size(), most, "CIDR rules",
                          "datapath.max_cidr_rules_per_attachment");
}

void upsert_cidr(Policy& policy, const CidrRule& rule) {
  for (CidrRule& existing : policy.cidrs) {
    if (existing.prefix == rule.prefix && existing.action == rule.action) {
      existing.expires = rule.expires;
      return;
    }
  }
  policy.cidrs.push_back(rule);
}

bool dns_mode_learns(datapath::Mode dns_mode) {
  return dns_mode == datapath::Mode::kAllowlist || dns_mode == datapath::Mode::kDenylist;
}

bool may_refuse_more_names(const Policy& before, const Policy& after) {
  if (after.dns_mode == datapath::Mode::kDisabled) return false;
  if (after.dns_mode != before.dns_mode) return true;
  using Rule = std::pair<std::string_view, Action>;
  const auto rules_of = [](const Policy& p) {
    std::set<Rule> rules;
    for (const DomainRule& d : p.domains) rules.emplace(d.name, d.action);
    return rules;
  };
  const std::set<Rule> had = rules_of(before), has = rules_of(after);
  const auto gone = [](const std::set<Rule>& from, const std::set<Rule>& in, Action action) {
    return std::any_of(from.begin(), from.end(),
                       [&](const Rule& r) { return r.second == action && !in.contains(r); });
  };
  return gone(had, has, Action::kAllow) || gone(has, had, Action::kDeny);
}

Status remove_cidr(Policy& policy, const net::IpPrefix& prefix, std::optional<Action> action) {
  const auto removed = std::erase_if(policy.cidrs, [&](const CidrRule& r) {
    return r.prefix == prefix && (!action || r.action == *action);
  });
  if (removed == 0) {
    return Error(Errc::kNotFound, "no " + (action ? std::string(action_name(*action)) + " " : "") +
                                      "rule for " + prefix.to_string());
  }
  return ok_status();
}

void upsert_domain(Policy& policy, const DomainRule& rule) {
  if (std::find(policy.domains.begin(), policy.domains.end(), rule) == policy.domains.end()) {
    policy.domains.push_back(rule);
  }
}

Status remove_domain(Policy& policy, const std::string& name, std::optional<Action> action) {
  const auto removed = std::erase_if(policy.domains, [&](const DomainRule& r) {
    return r.name == name && (!action || r.action == *action);
  });
  if (removed == 0) {
    return Error(Errc::kNotFound, "no " + (action ? std::string(action_name(*action)) + " " : "") +
                                      "rule for domain " + name);
  }
  return ok_status();
}

size_t drop_expired(Policy& policy, WallClock::time_point now) {
  return std::erase_if(policy.cidrs,
                       [&](const CidrRule& r) { return r.expires && *r.expires <= now; });
}

std::vector<datapath::Rule> kernel_rules(const Policy& policy, WallClock::time_point wall_now,
                                         datapath::BootClock::time_point boot_now) {
  std::vector<datapath::Rule> rules;
  rules.reserve(policy.cidrs.size());
  for (const CidrRule& r : policy.cidrs) {
    datapath::Rule rule{r.prefix, r.action, std::nullopt};
    if (r.expires) {
      if (*r.expires <= wall_now) continue;
      rule.expires = boot_now + std::chrono::duration_cast<datapath::BootClock::duration>(
                                    *r.expires - wall_now);
    }
    rules.push_back(rule);
  }
  return rules;
}

LearnableIndex::LearnableIndex(const Policy& policy, const NeverLearnRanges& never_learn)
    : never_learn_(&never_learn) {
  for (const CidrRule& r : policy.cidrs) {
    auto& lengths = r.prefix.family() == net::Family::kIPv4 ? v4_ : v6_;
    auto of_length = std::find_if(lengths.begin(), lengths.end(),
                                  [&](const OfLength& l) { return l.length == r.prefix.length(); });
    if (of_length == lengths.end()) {
      of_length = lengths.insert(lengths.end(), OfLength{r.prefix.length(), {}});
    }
    Sides& sides = of_length->prefixes[r.prefix.address()];
    auto& side = r.action == datapath::Action::kDeny ? sides.deny : sides.allow;
    // Of two rules for one side, the longer-lived counts.
    if (!side || !r.expires || (side->has_value() && **side < *r.expires)) side = r.expires;
  }
  for (auto* lengths : {&v4_, &v6_}) {
    std::sort(lengths->begin(), lengths->end(),
              [](const OfLength& a, const OfLength& b) { return a.length > b.length; });
  }
}

LearnableIndex::Verdict LearnableIndex::judge(const net::IpAddress& address,
                                              WallClock::time_point now) const {
  if (never_learn_->covers(address)) return Verdict::kNeverLearned;
  const auto live = [now](const std::optional<std::optional<WallClock::time_point>>& side) {
    return side.has_value() && (!side->has_value() || **side > now);
  };
  for (const OfLength& l : address.family() == net::Family::kIPv4 ? v4_ : v6_) {
    auto it = l.prefixes.find(address.masked(l.length));
    if (it == l.prefixes.end()) continue;
    const bool allows = live(it->second.allow);
    const bool denies = live(it->second.deny);
    if (!allows && !denies) continue;  // expired: no rule
    return !denies && l.length < address.max_prefix_length() ? Verdict::kLearnable
                                                             : Verdict::kUserRuleDecides;
  }
  return Verdict::kLearnable;
}

void LearnedHost::taught(uint64_t chain_id) {
  if (std::find(taught_by.begin(), taught_by.end(), chain_id) != taught_by.end()) return;
  if (taught_by.size() == kMaxTeachers) taught_by.erase(taught_by.begin());
  taught_by.push_back(chain_id);
}

std::vector<datapath::Rule> kernel_rules(const Policy& policy, const LearnedHosts& learned,
                                         const NeverLearnRanges& never_learn,
                                         WallClock::time_point wall_now,
                                         datapath::BootClock::time_point boot_now) {
  std::vector<datapath::Rule> rules = kernel_rules(policy, wall_now, boot_now);
  const LearnableIndex index(policy, never_learn);
  for (const auto& [address, held] : learned) {
    if (held.until <= boot_now || !index.learnable(address, wall_now)) continue;
    auto host = net::IpPrefix::make(address, address.max_prefix_length());
    if (!host.ok()) continue;
    rules.push_back({*host, datapath::Action::kAllow, held.until, /*learned=*/true});
  }
  return rules;
}

std::vector<net::IpAddress> prune_learned(LearnedHosts& learned, const LearnableIndex& index,
                                          WallClock::time_point wall_now,
                                          datapath::BootClock::time_point boot_now) {
  std::vector<net::IpAddress> dropped;
  absl::erase_if(learned, [&](const auto& host) {
    const bool drop = host.second.until <= boot_now || !index.learnable(host.first, wall_now);
    if (drop) dropped.push_back(host.first);
    return drop;
  });
  return dropped;
}

}  // namespace sebpf::daemon
