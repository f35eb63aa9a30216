#include "policy/policy_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "policy/domain_name.h"

namespace sebpf::policy {
namespace {

// yaml-cpp reports with exceptions; everything below throws this, and
// parse_policy_file turns it into an Error at the one boundary.
struct ParseError {
  std::string message;
};

[[noreturn]] void fail(const YAML::Node& at, const std::string& what) {
  const YAML::Mark mark = at.Mark();
  throw ParseError{mark.is_null() ? what : "line " + std::to_string(mark.line + 1) + ": " + what};
}

std::string scalar(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) fail(node, what + " must be a string");
  return node.Scalar();
}

// A mapping's entries, refusing keys it does not know and keys given twice
// (yaml-cpp would keep one silently).
std::map<std::string, YAML::Node> entries(const YAML::Node& node, const std::string& what,
                                          const std::set<std::string>& allowed) {
  if (!node.IsMap()) fail(node, what + " must be a mapping");
  std::map<std::string, YAML::Node> out;
  for (const auto& kv : node) {
    const std::string key = scalar(kv.first, "a key of " + what);
    if (!allowed.empty() && !allowed.count(key)) {
      std::string known;
      for (const auto& k : allowed) known += (known.empty() ? "" : ", ") + k;
      fail(kv.first, "unknown key \"" + key + "\" in " + what + " (known: " + known + ")");
    }
    if (!out.emplace(key, kv.second).second) {
      fail(kv.first, "key \"" + key + "\" appears twice in " + what);
    }
  }
  return out;
}

std::vector<std::string> scalar_list(const YAML::Node& node, const std::string& what) {
  if (node.IsNull()) return {};
  if (!node.IsSequence()) fail(node, what + " must be a list");
  std::vector<std::string> out;
  for (const auto& item : node) out.push_back(scalar(item, "an entry of " + what));
  return out;
}

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

const PolicySpec* PolicyFile::select(const std::map<std::string, std::string>& metadata) const {
  for (const NamedPolicy& p : policies) {
    bool all = true;
    for (const auto& [k, v] : p.match) {
      auto it = metadata.find(k);
      if (it == metadata.end() || it->second != v) {
        all = false;
        break;
      }
    }
    if (all) return &p.spec;
  }
  return fallback ? &*fallback : nullptr;
}

Result<PolicyFile> parse_policy_file(std::string_view yaml) {
  try {
    return parse_root(YAML::Load(std::string(yaml)));
  } catch (const ParseError& e) {
    return Error(Errc::kInvalidArgument, "policy file: " + e.message);
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument, "policy file: " + std::string(e.what()));
  }
}

Result<PolicyFile> load_policy_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::from_errno(errno, "open policy file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  auto file = parse_policy_file(text.str());
  if (!file.ok()) return file.error().wrap(path);
  return file;
}

}  // namespace sebpf::policy
