#include "dns/name_policy.h"

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

}  // namespace sebpf::dns
