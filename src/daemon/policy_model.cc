#include "daemon/policy_model.h"

#include <algorithm>

namespace sebpf::daemon {

using datapath::Action;

Policy policy_from_spec(const policy::PolicySpec& spec) {
  Policy p;
  p.mode = spec.mode;
  p.dns_mode = spec.dns_mode;
  for (const auto& prefix : spec.allow_cidrs)
    upsert_cidr(p, {prefix, Action::kAllow, std::nullopt});
  for (const auto& prefix : spec.deny_cidrs) upsert_cidr(p, {prefix, Action::kDeny, std::nullopt});
  for (const auto& name : spec.allow_domains) upsert_domain(p, {name, Action::kAllow});
  for (const auto& name : spec.deny_domains) upsert_domain(p, {name, Action::kDeny});
  return p;
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

}  // namespace sebpf::daemon
