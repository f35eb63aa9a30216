#include "policy/policy_file.h"

#include <set>

#include "common/text_file.h"
#include "policy/domain_name.h"
#include "policy/strict_yaml.h"

namespace sebpf::policy {
namespace {

using strict_yaml::entries;
using strict_yaml::fail;
using strict_yaml::scalar;
using strict_yaml::scalar_list;

datapath::Mode mode_of(const YAML::Node& node, const std::string& what) {
  auto mode = datapath::parse_mode(scalar(node, what));
  if (!mode.ok()) fail(node, what + ": " + mode.error().message());
  return *mode;
}

std::vector<net::IpPrefix> cidrs_of(const YAML::Node& node, const std::string& what) {
  std::vector<net::IpPrefix> out;
  size_t i = 0;
  for (const std::string& text : scalar_list(node, what)) {
    auto prefix = net::IpPrefix::parse(text);
    if (!prefix.ok())
      fail(node.IsSequence() ? node[i] : node, what + ": " + prefix.error().message());
    out.push_back(*prefix);
    ++i;
  }
  return out;
}

std::vector<std::string> domains_of(const YAML::Node& node, const std::string& what) {
  std::vector<std::string> out;
  size_t i = 0;
  for (const std::string& text : scalar_list(node, what)) {
    auto name = normalize_domain(text);
    if (!name.ok()) fail(node.IsSequence() ? node[i] : node, what + ": " + name.error().message());
    out.push_back(*name);
    ++i;
  }
  return out;
}

PolicySpec spec_of(const std::map<std::string, YAML::Node>& e, const std::string& what) {
  PolicySpec spec;
  auto get = [&](const char* key) -> const YAML::Node* {
    auto it = e.find(key);
    return it == e.end() ? nullptr : &it->second;
  };
  if (auto* n = get("mode")) spec.mode = mode_of(*n, what + " mode");
  if (auto* n = get("dns_mode")) spec.dns_mode = mode_of(*n, what + " dns_mode");
  if (auto* n = get("allow_cidrs")) spec.allow_cidrs = cidrs_of(*n, what + " allow_cidrs");
  if (auto* n = get("deny_cidrs")) spec.deny_cidrs = cidrs_of(*n, what + " deny_cidrs");
  if (auto* n = get("allow_domains")) spec.allow_domains = domains_of(*n, what + " allow_domains");
  if (auto* n = get("deny_domains")) spec.deny_domains = domains_of(*n, what + " deny_domains");
  return spec;
}

const std::set<std::string> kSpecKeys = {"mode",       "dns_mode",      "allow_cidrs",
                                         "deny_cidrs", "allow_domains", "deny_domains"};

PolicyFile parse_root(const YAML::Node& root) {
  if (!root.IsDefined() || root.IsNull()) fail(root, "the policy file is empty");
  const auto top = entries(root, "the policy file", {"version", "policies", "default"});
  auto version = top.find("version");
  if (version == top.end()) fail(root, "\"version: 1\" is missing");
  if (scalar(version->second, "version") != "1") {
    fail(version->second,
         "unsupported version \"" + version->second.Scalar() + "\" (this build reads 1)");
  }
  PolicyFile file;
  std::set<std::string> names;
  if (auto it = top.find("policies"); it != top.end() && !it->second.IsNull()) {
    if (!it->second.IsSequence()) fail(it->second, "policies must be a list");
    for (const auto& item : it->second) {
      std::set<std::string> keys = kSpecKeys;
      keys.insert({"name", "match"});
      const auto e = entries(item, "a policy", keys);
      NamedPolicy policy;
      auto name = e.find("name");
      if (name == e.end()) fail(item, "a policy needs a name");
      policy.name = scalar(name->second, "name");
      if (!names.insert(policy.name).second) {
        fail(name->second, "two policies are named \"" + policy.name + "\"");
      }
      if (auto m = e.find("match"); m != e.end() && !m->second.IsNull()) {
        for (const auto& [k, v] : entries(m->second, "match of " + policy.name, {})) {
          policy.match[k] = scalar(v, "match value " + k);
        }
      }
      policy.spec = spec_of(e, "policy " + policy.name + ":");
      file.policies.push_back(std::move(policy));
    }
  }
  if (auto it = top.find("default"); it != top.end()) {
    file.fallback = spec_of(entries(it->second, "default", kSpecKeys), "default:");
  }
  return file;
}

}  // namespace

std::optional<PolicySelection> PolicyFile::select(
    const std::map<std::string, std::string>& metadata) const {
  for (const NamedPolicy& p : policies) {
    bool all = true;
    for (const auto& [k, v] : p.match) {
      auto it = metadata.find(k);
      if (it == metadata.end() || it->second != v) {
        all = false;
        break;
      }
    }
    if (all) return PolicySelection{p.name, &p.spec};
  }
  if (fallback) return PolicySelection{"default", &*fallback};
  return std::nullopt;
}

Result<PolicyFile> parse_policy_file(std::string_view yaml) {
  PolicyFile file;
  SEBPF_RETURN_IF_ERROR(strict_yaml::parse_strict_yaml(
      yaml, "policy file", [&](const YAML::Node& root) { file = parse_root(root); }));
  return file;
}

Result<PolicyFile> load_policy_file(const std::string& path) {
  SEBPF_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "policy file"));
  auto file = parse_policy_file(text);
  if (!file.ok()) return file.error().wrap(path);
  return file;
}

}  // namespace sebpf::policy
