#include "dns/name_policy.h"

#include <algorithm>

namespace sebpf::dns {

using datapath::Action;
using datapath::Mode;

QueryVerdict judge_query(const NamePolicy& policy, std::string_view qname) {
  switch (policy.mode) {
    case Mode::kDisabled:
      return QueryVerdict::kForward;
    case Mode::kAllowlist:
      return policy.rules.match(qname) == Action::kAllow ? QueryVerdict::kResolve
                                                         : QueryVerdict::kRefuse;
    case Mode::kDenylist:
      return policy.rules.match(qname) == Action::kDeny ? QueryVerdict::kRefuse
                                                        : QueryVerdict::kResolve;
    case Mode::kBlockAll:
      return QueryVerdict::kRefuse;
  }
  return QueryVerdict::kRefuse;  // a mode this code does not know: fail closed
}

bool chain_name_denied(const NamePolicy& policy, std::string_view name) {
  if (policy.mode == Mode::kDisabled) return false;
  return policy.rules.match(name) == Action::kDeny;
}

bool answer_refused(const NamePolicy& policy, std::span<const std::string_view> chain) {
  if (chain.empty() || judge_query(policy, chain[0]) == QueryVerdict::kRefuse) return true;
  return std::any_of(chain.begin() + 1, chain.end(),
                     [&](std::string_view name) { return chain_name_denied(policy, name); });
}

}  // namespace sebpf::dns
