// The daemon's view of one attachment's policy: what the user asked for
// (mode, DNS mode, CIDR and domain rules), kept in the state file and turned
// into kernel rules by the datapath. CIDR expiries are wall-clock times so
// that they mean the same after a restart or a reboot.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
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

// A policy-file entry as a Policy (its rules never expire).
Policy policy_from_spec(const policy::PolicySpec& spec);

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

// Drops CIDR rules that expired at or before `now`. Returns how many.
size_t drop_expired(Policy& policy, WallClock::time_point now);

// The kernel rules for the policy's CIDRs, expiries converted to the boot
// clock the kernel checks. Rules that have expired are left out.
std::vector<datapath::Rule> kernel_rules(const Policy& policy, WallClock::time_point wall_now,
                                         datapath::BootClock::time_point boot_now);

}  // namespace sebpf::daemon
