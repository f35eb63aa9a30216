#include "policy/domain_rules.h"

#include "policy/domain_name.h"

namespace sebpf::policy {
namespace {

char fold(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

size_t DomainRules::FoldedHash::operator()(std::string_view name) const noexcept {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a
  for (const char c : name) {
    h ^= static_cast<uint8_t>(fold(c));
    h *= 1099511628211ULL;
  }
  return static_cast<size_t>(h);
}

bool DomainRules::FoldedEqual::operator()(std::string_view a, std::string_view b) const noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (fold(a[i]) != fold(b[i])) return false;
  }
  return true;
}

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
  std::string_view name = qname;
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return std::nullopt;  // the root: no rule names it
  // From the full name up to its last label: the first rule found has the
  // most labels.
  while (true) {
    auto it = rules_.find(name);
    if (it != rules_.end()) {
      return it->second.deny ? datapath::Action::kDeny : datapath::Action::kAllow;
    }
    const size_t dot = name.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    name.remove_prefix(dot + 1);
  }
}

}  // namespace sebpf::policy
