#include "policy/domain_rules.h"

#include "policy/domain_name.h"

namespace sebpf::policy {

Status DomainRules::add(std::string_view name, datapath::Action action) {
  SEBPF_ASSIGN_OR_RETURN(std::string canonical, normalize_domain(name));
  Sides& sides = rules_[canonical];
  (action == datapath::Action::kAllow ? sides.allow : sides.deny) = true;
  return ok_status();
}

Status DomainRules::remove(std::string_view name, datapath::Action action) {
  SEBPF_ASSIGN_OR_RETURN(std::string canonical, normalize_domain(name));
  auto it = rules_.find(canonical);
  bool* side = nullptr;
  if (it != rules_.end()) {
    side = action == datapath::Action::kAllow ? &it->second.allow : &it->second.deny;
  }
  if (side == nullptr || !*side) {
    return Error(Errc::kNotFound,
                 "no " + std::string(datapath::action_name(action)) + " rule for " + canonical);
  }
  *side = false;
  if (!it->second.allow && !it->second.deny) rules_.erase(it);
  return ok_status();
}

std::optional<datapath::Action> DomainRules::match(std::string_view qname) const {
  auto canonical = normalize_domain(qname);
  if (!canonical.ok()) return std::nullopt;
  // From the full name up to its last label: the first rule found has the
  // most labels.
  std::string_view name = *canonical;
  while (true) {
    auto it = rules_.find(std::string(name));
    if (it != rules_.end()) {
      return it->second.deny ? datapath::Action::kDeny : datapath::Action::kAllow;
    }
    const size_t dot = name.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    name.remove_prefix(dot + 1);
  }
}

}  // namespace sebpf::policy
