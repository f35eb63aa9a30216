#include "daemon/api_convert.h"

#include <google/protobuf/util/time_util.h>

#include <charconv>
#include <set>
#include <utility>

#include "policy/domain_name.h"

namespace sebpf::daemon {

namespace {

Error field_error(std::string_view field, std::string_view what) {
  return Error(Errc::kInvalidArgument, std::string(field) + ": " + std::string(what));
}

std::string indexed(std::string_view field, int i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

bool valid_utf8_text(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;  // control characters
      len = 1;
    } else if ((c & 0xe0) == 0xc0 && c >= 0xc2) {
      len = 2;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
    } else if ((c & 0xf8) == 0xf0 && c <= 0xf4) {
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

Result<datapath::Mode> mode_from_api(v1::Mode mode, std::string_view field) {
  switch (mode) {
    case v1::MODE_DISABLED:
      return datapath::Mode::kDisabled;
    case v1::MODE_ALLOWLIST:
      return datapath::Mode::kAllowlist;
    case v1::MODE_DENYLIST:
      return datapath::Mode::kDenylist;
    case v1::MODE_BLOCK_ALL:
      return datapath::Mode::kBlockAll;
    case v1::MODE_UNSPECIFIED:
      return field_error(field, "mode is required (disabled, allowlist, denylist or block_all)");
    default:
      return field_error(field, "unknown mode " + std::to_string(mode));
  }
}

v1::Mode mode_to_api(datapath::Mode mode) {
  switch (mode) {
    case datapath::Mode::kDisabled:
      return v1::MODE_DISABLED;
    case datapath::Mode::kAllowlist:
      return v1::MODE_ALLOWLIST;
    case datapath::Mode::kDenylist:
      return v1::MODE_DENYLIST;
    case datapath::Mode::kBlockAll:
      return v1::MODE_BLOCK_ALL;
  }
  return v1::MODE_UNSPECIFIED;
}

Result<std::optional<datapath::Action>> action_from_api(v1::Action action, std::string_view field,
                                                        bool unspecified_means_both) {
  switch (action) {
    case v1::ACTION_ALLOW:
      return std::optional(datapath::Action::kAllow);
    case v1::ACTION_DENY:
      return std::optional(datapath::Action::kDeny);
    case v1::ACTION_UNSPECIFIED:
      if (unspecified_means_both) return std::optional<datapath::Action>();
      return field_error(field, "action is required (allow or deny)");
    default:
      return field_error(field, "unknown action " + std::to_string(action));
  }
}

v1::Action action_to_api(datapath::Action action) {
  return action == datapath::Action::kAllow ? v1::ACTION_ALLOW : v1::ACTION_DENY;
}

Result<net::IpPrefix> cidr_from_api(std::string_view text, std::string_view field) {
  auto prefix = net::IpPrefix::parse(text);
  if (!prefix.ok()) return field_error(field, prefix.error().message());
  return *prefix;
}

Result<CidrRule> cidr_rule_from_api(const v1::CidrRule& rule, std::string_view field,
                                    WallClock::time_point now) {
  const std::string f(field);
  SEBPF_ASSIGN_OR_RETURN(net::IpPrefix prefix, cidr_from_api(rule.cidr(), f + ".cidr"));
  SEBPF_ASSIGN_OR_RETURN(auto action, action_from_api(rule.action(), f + ".action", false));
  if (rule.ttl_seconds() > kMaxTtlSeconds) {
    return field_error(f + ".ttl_seconds", "at most " + std::to_string(kMaxTtlSeconds) +
                                               " (10 years); leave it 0 for a rule that never "
                                               "expires");
  }
  if (rule.has_expires_at()) {
    return field_error(f + ".expires_at", "is output only; set ttl_seconds instead");
  }
  CidrRule out{prefix, *action, std::nullopt};
  if (rule.ttl_seconds() > 0) out.expires = now + std::chrono::seconds(rule.ttl_seconds());
  return out;
}

Result<std::string> domain_from_api(std::string_view text, std::string_view field) {
  auto name = policy::normalize_domain(text);
  if (!name.ok()) return field_error(field, name.error().message());
  return *name;
}

Result<DomainRule> domain_rule_from_api(const v1::DomainRule& rule, std::string_view field) {
  const std::string f(field);
  SEBPF_ASSIGN_OR_RETURN(std::string name, domain_from_api(rule.domain(), f + ".domain"));
  SEBPF_ASSIGN_OR_RETURN(auto action, action_from_api(rule.action(), f + ".action", false));
  return DomainRule{name, *action};
}

Result<Policy> policy_from_api(const v1::Policy& policy, std::string_view field,
                               WallClock::time_point now) {
  const std::string f(field);
  Policy out;
  SEBPF_ASSIGN_OR_RETURN(out.mode, mode_from_api(policy.mode(), f + ".mode"));
  SEBPF_ASSIGN_OR_RETURN(out.dns_mode, mode_from_api(policy.dns_mode(), f + ".dns_mode"));
  std::map<std::pair<std::string, datapath::Action>, int> seen_cidrs;
  for (int i = 0; i < policy.cidrs_size(); ++i) {
    const std::string name = indexed(f + ".cidrs", i);
    SEBPF_ASSIGN_OR_RETURN(CidrRule rule, cidr_rule_from_api(policy.cidrs(i), name, now));
    auto [it, fresh] = seen_cidrs.emplace(std::pair(rule.prefix.to_string(), rule.action), i);
    if (!fresh) return field_error(name, "repeats " + indexed(f + ".cidrs", it->second));
    out.cidrs.push_back(rule);
  }
  std::map<std::pair<std::string, datapath::Action>, int> seen_domains;
  for (int i = 0; i < policy.domains_size(); ++i) {
    const std::string name = indexed(f + ".domains", i);
    SEBPF_ASSIGN_OR_RETURN(DomainRule rule, domain_rule_from_api(policy.domains(i), name));
    auto [it, fresh] = seen_domains.emplace(std::pair(rule.name, rule.action), i);
    if (!fresh) return field_error(name, "repeats " + indexed(f + ".domains", it->second));
    out.domains.push_back(rule);
  }
  return out;
}

void policy_to_api(const Policy& policy, v1::Policy* out) {
  using google::protobuf::util::TimeUtil;
  out->set_mode(mode_to_api(policy.mode));
  out->set_dns_mode(mode_to_api(policy.dns_mode));
  for (const CidrRule& r : policy.cidrs) {
    v1::CidrRule* rule = out->add_cidrs();
    rule->set_cidr(r.prefix.to_string());
    rule->set_action(action_to_api(r.action));
    if (r.expires) {
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(r.expires->time_since_epoch());
      *rule->mutable_expires_at() = TimeUtil::NanosecondsToTimestamp(ns.count());
    }
  }
  for (const DomainRule& r : policy.domains) {
    v1::DomainRule* rule = out->add_domains();
    rule->set_domain(r.name);
    rule->set_action(action_to_api(r.action));
  }
}

Status check_policy_message_size(const Policy& before, const Policy& after) {
  const auto bytes_of = [](const Policy& policy) {
    v1::Policy message;
    policy_to_api(policy, &message);
    return message.ByteSizeLong();
  };
  const size_t bytes = bytes_of(after);
  if (bytes <= kMaxPolicyMessageBytes || bytes <= bytes_of(before)) return ok_status();
  return Error(Errc::kResourceExhausted,
               "the policy would take " + std::to_string(bytes) +
                   " bytes as an API message, more than " + std::to_string(kMaxPolicyMessageBytes) +
                   " (what a client with gRPC's default 4 MiB limit can read back)");
}

Status check_policy_bounds(const Policy& before, const Policy& after, const PolicyLimits& limits) {
  SEBPF_RETURN_IF_ERROR(check_domain_rule_count(before, after, limits.max_domain_rules));
  SEBPF_RETURN_IF_ERROR(check_cidr_rule_count(before, after, limits.max_cidr_rules));
  return check_policy_message_size(before, after);
}

Status check_policy_file_bounds(const policy::PolicyFile& file, const PolicyLimits& limits) {
  const auto check = [&](const std::string& name, const policy::PolicySpec& spec) -> Status {
    const Status fits = check_policy_bounds(Policy{}, policy_from_spec(spec), limits);
    if (fits.ok()) return fits;
    return Error(Errc::kInvalidArgument, "policy \"" + name + "\": " + fits.error().message() +
                                             ", so no attach could use it");
  };
  for (const auto& named : file.policies) SEBPF_RETURN_IF_ERROR(check(named.name, named.spec));
  if (file.fallback) SEBPF_RETURN_IF_ERROR(check("default", *file.fallback));
  return ok_status();
}

Result<Metadata> metadata_from_api(const google::protobuf::Map<std::string, std::string>& metadata,
                                   std::string_view field) {
  constexpr size_t kMaxEntries = 64;
  constexpr size_t kMaxKey = 63;
  constexpr size_t kMaxValue = 1024;
  if (metadata.size() > kMaxEntries) {
    return field_error(field, "at most " + std::to_string(kMaxEntries) + " entries");
  }
  Metadata out;
  for (const auto& [key, value] : metadata) {
    const std::string f = std::string(field) + "[" + (valid_utf8_text(key) ? key : "?") + "]";
    if (key.empty() || key.size() > kMaxKey) {
      return field_error(f, "keys are 1-" + std::to_string(kMaxKey) + " characters");
    }
    for (char c : key) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-' || c == '/';
      if (!ok) return field_error(f, "keys use only letters, digits and . _ - /");
    }
    if (value.size() > kMaxValue) {
      return field_error(f, "values are at most " + std::to_string(kMaxValue) + " bytes");
    }
    if (!valid_utf8_text(value)) {
      return field_error(f, "values are UTF-8 text without control characters");
    }
    out.emplace(key, value);
  }
  return out;
}

Result<uint64_t> attachment_id_from_api(std::string_view id, std::string_view field) {
  constexpr std::string_view kPrefix = "att-";
  if (id.empty()) return field_error(field, "an attachment id is required");
  const Error not_an_id = field_error(field, "not an attachment id (they look like att-12)");
  if (!id.starts_with(kPrefix)) return not_an_id;
  const std::string_view digits = id.substr(kPrefix.size());
  uint64_t number = 0;
  if (digits.empty() || digits.front() == '0') return not_an_id;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (ec != std::errc() || end != digits.data() + digits.size()) return not_an_id;
  return number;
}

std::string attachment_id_to_api(uint64_t number) { return "att-" + std::to_string(number); }

void dns_counters_to_api(const dns::EndpointCounters& c, const LearnedCounts& learned,
                         v1::DnsCounters* out) {
  out->set_queries(c.queries);
  out->set_refused(c.refused);
  out->set_forwarded(c.forwarded);
  out->set_answered(c.answered);
  out->set_servfail(c.servfail);
  out->set_malformed(c.malformed);
  out->set_rate_limited(c.rate_limited);
  out->set_answer_addresses(c.answer_addresses);
  out->set_addresses_not_learned(learned.not_learned);
  out->set_learned_hosts(learned.hosts);
  out->set_learned_hosts_most(learned.hosts_most);
  out->set_servfail_no_room(learned.no_room);
  out->set_dropped_unread(c.dropped_unread);
}

void counters_to_api(const datapath::Counters& counters, v1::Counters* out) {
  for (int h = 0; h < SEBPF_HOOK_COUNT; ++h) {
    for (int r = 0; r < SEBPF_REASON_COUNT; ++r) {
      const auto hook = static_cast<datapath::HookKind>(h);
      const auto reason = static_cast<datapath::Reason>(r);
      const uint64_t count = counters.get(hook, reason);
      if (count == 0) continue;
      v1::Counter* c = out->add_counters();
      c->set_hook(std::string(datapath::hook_kind_name(hook)));
      c->set_reason(std::string(datapath::reason_name(reason)));
      c->set_allowed(reason < SEBPF_FIRST_DENY_REASON);
      c->set_count(count);
      if (c->allowed()) {
        out->set_allowed(out->allowed() + count);
      } else {
        out->set_denied(out->denied() + count);
      }
    }
  }
}

}  // namespace sebpf::daemon
