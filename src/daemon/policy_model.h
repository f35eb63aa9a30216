// The daemon's view of one attachment's policy: what the user asked for
// (mode, DNS mode, CIDR and domain rules), kept in the state file and turned
// into kernel rules by the datapath. CIDR expiries are wall-clock times so
// that they mean the same after a restart or a reboot.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "common/result.h"
#include "daemon/never_learn.h"
#include "datapath/types.h"
#include "net/ip_prefix.h"
#include "policy/policy_file.h"

namespace sebpf::daemon {

using WallClock = std::chrono::system_clock;

struct CidrRule {
  net::IpPrefix prefix;
  datapath::Action action = datapath::Action::kAllow;
  std::optional<WallClock::time_point> expires;  // none: never
  bool operator==(const CidrRule&) const = default;
};

struct DomainRule {
  std::string name;  // normalized (policy/domain_name.h)
  datapath::Action action = datapath::Action::kAllow;
  bool operator==(const DomainRule&) const = default;
};

struct Policy {
  // Fail closed: a new attachment with no policy reaches nothing but its
  // DNS endpoint (and loopback, for cgroups).
  datapath::Mode mode = datapath::Mode::kAllowlist;
  datapath::Mode dns_mode = datapath::Mode::kAllowlist;
  std::vector<CidrRule> cidrs;
  std::vector<DomainRule> domains;
  bool operator==(const Policy&) const = default;
};

// A policy-file entry as a Policy (its rules never expire). A rule the
// entry repeats is held once.
Policy policy_from_spec(const policy::PolicySpec& spec);

// What one attachment's policy may hold (DaemonConfig::policy_limits).
struct PolicyLimits {
  size_t max_domain_rules;  // dns.max_domain_rules
  // datapath.max_cidr_rules_per_attachment; 0: no cap (the kernel's tables,
  // shared by all attachments, are the only bound).
  size_t max_cidr_rules;
};

// Errc::kResourceExhausted when `after` holds more than `most` domain
// rules (dns.max_domain_rules) and more than `before` does: a policy past
// the cap (lowered since the policy was set) may shed rules, never gain
// them.
Status check_domain_rule_count(const Policy& before, const Policy& after, size_t most);
// The same for CIDR rules (allow and deny, both families) and
// datapath.max_cidr_rules_per_attachment; `most` 0: no cap.
Status check_cidr_rule_count(const Policy& before, const Policy& after, size_t most);

// Adds the rule, or gives the rule of the same prefix and action the new
// expiry.
void upsert_cidr(Policy& policy, const CidrRule& rule);
// Removes the rule of one action on the prefix, or both. Errc::kNotFound
// when there was none.
Status remove_cidr(Policy& policy, const net::IpPrefix& prefix,
                   std::optional<datapath::Action> action);
// `name` must be normalized already. Adding a rule that exists is a no-op.
void upsert_domain(Policy& policy, const DomainRule& rule);
Status remove_domain(Policy& policy, const std::string& name,
                     std::optional<datapath::Action> action);

// Whether DNS answers teach hosts to an attachment in this DNS mode
// (disabled forwards without learning, block_all refuses).
bool dns_mode_learns(datapath::Mode dns_mode);

// Whether `after` may refuse a DNS query or answer that `before` let
// through: the DNS mode changed (to anything but disabled), an allow rule
// is gone, or a deny rule is new. Adding an allow or removing a deny never
// refuses more (the most specific rule wins, and deny wins a tie).
bool may_refuse_more_names(const Policy& before, const Policy& after);

// Drops CIDR rules that expired at or before `now`. Returns how many.
size_t drop_expired(Policy& policy, WallClock::time_point now);

// The kernel rules for the policy's CIDRs, expiries converted to the boot
// clock the kernel checks. Rules that have expired are left out.
std::vector<datapath::Rule> kernel_rules(const Policy& policy, WallClock::time_point wall_now,
                                         datapath::BootClock::time_point boot_now);

// Addresses the DNS proxy learned for one attachment, each with the boot
// clock deadline the kernel enforces. Not in the state file: the kernel
// maps hold them (flagged as learned) and a restarted daemon reads them
// back; after a reboot workloads simply resolve again. Every answer the
// DNS proxy releases looks its addresses up here, in a table of up to
// max_host_rules entries: open addressing keeps an entry in the slot the
// hash names (one cache miss), where a node-based map chases two or more.
struct LearnedHost {
  // A host remembers this many chains, the latest (more would let one
  // address shared by many names cost without bound).
  static constexpr size_t kMaxTeachers = 8;

  datapath::BootClock::time_point until{};
  // The chains (TeachingChains ids) of the last answers that taught it,
  // oldest first, so that a domain rule added later can take it back. None
  // for a host read back from the kernel that no saved record covers.
  absl::InlinedVector<uint64_t, 1> taught_by;

  void taught(uint64_t chain_id);
};
using LearnedHosts = absl::flat_hash_map<net::IpAddress, LearnedHost, net::IpAddressHash>;

// Whether a learned allow for an address may be written: it must not be in
// dns.never_learn, and the longest unexpired explicit rule covering it must
// neither be a rule for exactly that host (the user's rule decides) nor
// have a deny side. A learned /32 is longer than any deny prefix, so
// writing it under one would override the user's deny.
//
// Built once per policy: its CIDR rules by prefix length, so an address
// costs a hash lookup per length the policy uses rather than a scan of
// every rule (a policy may hold thousands, and the DNS proxy asks for every
// address it learns).
class LearnableIndex {
 public:
  enum class Verdict { kLearnable, kUserRuleDecides, kNeverLearned };

  // `never_learn` must outlive the index.
  LearnableIndex(const Policy& policy, const NeverLearnRanges& never_learn);
  Verdict judge(const net::IpAddress& address, WallClock::time_point now) const;
  bool learnable(const net::IpAddress& address, WallClock::time_point now) const {
    return judge(address, now) == Verdict::kLearnable;
  }

 private:
  struct Sides {
    std::optional<std::optional<WallClock::time_point>> allow, deny;  // rule present: its expiry
  };
  struct OfLength {
    int length = 0;
    absl::flat_hash_map<net::IpAddress, Sides, net::IpAddressHash> prefixes;
  };
  const NeverLearnRanges* never_learn_;
  std::vector<OfLength> v4_, v6_;  // longest first
};

// kernel_rules(policy) plus the learned hosts that are still learnable and
// unexpired: the complete rule set of an attachment.
std::vector<datapath::Rule> kernel_rules(const Policy& policy, const LearnedHosts& learned,
                                         const NeverLearnRanges& never_learn,
                                         WallClock::time_point wall_now,
                                         datapath::BootClock::time_point boot_now);

// Drops learned hosts that expired or that the policy (its index) no longer
// lets stand; returns the ones dropped (their kernel rules must go too).
std::vector<net::IpAddress> prune_learned(LearnedHosts& learned, const LearnableIndex& index,
                                          WallClock::time_point wall_now,
                                          datapath::BootClock::time_point boot_now);

}  // namespace sebpf::daemon
