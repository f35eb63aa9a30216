// Between the API's messages (superebpf.v1) and the daemon's model. Every
// check of caller input lives here, and every error is
// Errc::kInvalidArgument with a message that starts with the field's name
// ("policy.cidrs[2].cidr: ..."), so callers know what to fix.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "daemon/learned_share.h"
#include "daemon/policy_model.h"
#include "datapath/types.h"
#include "dns/endpoint_counters.h"
#include "superebpf/v1/daemon.pb.h"

namespace sebpf::daemon {

namespace v1 = ::superebpf::v1;

using Metadata = std::map<std::string, std::string>;

// MODE_UNSPECIFIED is an error: a policy must say what it enforces.
Result<datapath::Mode> mode_from_api(v1::Mode mode, std::string_view field);
v1::Mode mode_to_api(datapath::Mode mode);

// ACTION_UNSPECIFIED is an error unless `unspecified_means_both`, where it
// comes back as no action.
Result<std::optional<datapath::Action>> action_from_api(v1::Action action, std::string_view field,
                                                        bool unspecified_means_both);
v1::Action action_to_api(datapath::Action action);

// The longest TTL a rule may have; longer ones are a mistake (or an
// overflow), not "almost forever": leave the TTL out for that.
inline constexpr uint64_t kMaxTtlSeconds = 10ull * 366 * 24 * 3600;

Result<net::IpPrefix> cidr_from_api(std::string_view text, std::string_view field);
Result<CidrRule> cidr_rule_from_api(const v1::CidrRule& rule, std::string_view field,
                                    WallClock::time_point now);
Result<DomainRule> domain_rule_from_api(const v1::DomainRule& rule, std::string_view field);
Result<std::string> domain_from_api(std::string_view text, std::string_view field);

// A whole policy; a rule repeated (same CIDR and action, or same domain and
// action) is an error, as it is almost always a mistake in what was sent.
Result<Policy> policy_from_api(const v1::Policy& policy, std::string_view field,
                               WallClock::time_point now);
void policy_to_api(const Policy& policy, v1::Policy* out);

// The most bytes a policy may take as an API message: what gRPC receives
// by default (4 MiB), less room for the id of the ReplacePolicy request
// that would carry it. Any policy the daemon holds can then be read
// (GetPolicy, and every change's reply) and sent back (ReplacePolicy) by a
// client with gRPC's default limits.
inline constexpr size_t kMaxPolicyMessageBytes = (size_t{4} << 20) - 1024;
// Errc::kResourceExhausted when `after` takes more than
// kMaxPolicyMessageBytes as an API message, and more than `before` does
// (a policy held already may shed rules).
Status check_policy_message_size(const Policy& before, const Policy& after);
// What an attachment's policy may grow to from `before` (what it holds
// now): check_domain_rule_count, check_cidr_rule_count, then
// check_policy_message_size.
Status check_policy_bounds(const Policy& before, const Policy& after, const PolicyLimits& limits);
// Errc::kInvalidArgument naming the first entry of the file (or its
// default) whose policy is past those bounds: refused when the file is
// read rather than at each attach it would select.
Status check_policy_file_bounds(const policy::PolicyFile& file, const PolicyLimits& limits);

// Keys: 1-63 characters of [A-Za-z0-9._/-]; values: up to 1024 bytes of
// UTF-8 without control characters; at most 64 entries.
Result<Metadata> metadata_from_api(const google::protobuf::Map<std::string, std::string>& metadata,
                                   std::string_view field);

// An attachment id as the API carries it ("att-12"): the number, or
// Errc::kInvalidArgument.
Result<uint64_t> attachment_id_from_api(std::string_view id, std::string_view field);
std::string attachment_id_to_api(uint64_t number);

// The kernel's counters as the API gives them: non-zero ones only, with
// their sums.
void counters_to_api(const datapath::Counters& counters, v1::Counters* out);
void dns_counters_to_api(const dns::EndpointCounters& counters, const LearnedCounts& learned,
                         v1::DnsCounters* out);

}  // namespace sebpf::daemon
