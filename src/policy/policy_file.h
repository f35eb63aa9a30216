// The local policy file: metadata selectors -> policy (mode, CIDR rules,
// domain rules, DNS mode). It makes a host useful with no control plane:
// superebpfd applies the first matching policy to each new attachment.
//
//   version: 1
//   policies:
//     - name: agent-vm
//       match: {role: agent}          # all must equal the attachment's metadata
//       mode: allowlist
//       dns_mode: allowlist
//       allow_cidrs: [198.51.100.0/24]
//       deny_cidrs: []
//       allow_domains: [mirror.example.org, packages.example.net]
//       deny_domains: []
//   default:                          # optional: when no selector matches
//     mode: block_all
//
// Strict: an unknown or repeated key, a wrong type, a bad CIDR or domain is
// an error naming the line, never a silently ignored rule.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "datapath/types.h"
#include "net/ip_prefix.h"

namespace sebpf::policy {

struct PolicySpec {
  datapath::Mode mode = datapath::Mode::kAllowlist;
  datapath::Mode dns_mode = datapath::Mode::kAllowlist;  // same four modes, for names
  std::vector<net::IpPrefix> allow_cidrs;
  std::vector<net::IpPrefix> deny_cidrs;
  std::vector<std::string> allow_domains;  // normalized
  std::vector<std::string> deny_domains;

  bool operator==(const PolicySpec&) const = default;
};

struct NamedPolicy {
  std::string name;
  std::map<std::string, std::string> match;  // empty: matches everything
  PolicySpec spec;
};

struct PolicySelection {
  std::string name;
  const PolicySpec* spec = nullptr;  // points into the PolicyFile
};

struct PolicyFile {
  std::vector<NamedPolicy> policies;
  std::optional<PolicySpec> fallback;  // the file's "default:"

  // The first policy whose selectors all equal the metadata, else the
  // default (named "default"), else none.
  std::optional<PolicySelection> select(const std::map<std::string, std::string>& metadata) const;
};

Result<PolicyFile> parse_policy_file(std::string_view yaml);
Result<PolicyFile> load_policy_file(const std::string& path);

}  // namespace sebpf::policy
