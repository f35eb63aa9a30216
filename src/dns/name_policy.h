// How an attachment's DNS mode and domain rules judge a name: the query
// name decides whether the query is forwarded at all (a query can carry
// data out, so a refused one never leaves the host), and the names an
// answer's CNAME chain passes through are checked against explicit denies.
#pragma once

#include <span>
#include <string_view>

#include "datapath/types.h"
#include "policy/domain_rules.h"

namespace sebpf::dns {

struct NamePolicy {
  datapath::Mode mode = datapath::Mode::kAllowlist;
  policy::DomainRules rules;
};

enum class QueryVerdict : uint8_t {
  kRefuse,   // answered by us (NXDOMAIN or REFUSED), never forwarded
  kResolve,  // forwarded; the answer's addresses are learned before it is released
  kForward,  // DNS mode disabled: forwarded, nothing learned
};

// `qname` in the parser's form (lowercase, no trailing dot).
QueryVerdict judge_query(const NamePolicy& policy, std::string_view qname);

// Whether a CNAME target in an answer is denied. Only an explicit deny
// counts: an allowed name commonly points into a CDN's domain that no rule
// names, and the user allowed the name that was asked for.
bool chain_name_denied(const NamePolicy& policy, std::string_view name);

// Whether the policy refuses an answer whose chain is `chain`: the name
// asked for, then each CNAME target. What judges an answer again when the
// policy changed after it was first judged (and what a later domain rule
// takes back). An empty chain is refused.
bool answer_refused(const NamePolicy& policy, std::span<const std::string_view> chain);

}  // namespace sebpf::dns
