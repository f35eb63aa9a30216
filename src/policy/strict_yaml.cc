#include "policy/strict_yaml.h"

#include <yaml-cpp/depthguard.h>

namespace sebpf::strict_yaml {

void fail(const YAML::Node& at, const std::string& what) {
  const YAML::Mark mark = at.Mark();
  throw StrictYamlError{mark.is_null() ? what
                                       : "line " + std::to_string(mark.line + 1) + ": " + what};
}

std::string scalar(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) fail(node, what + " must be a string");
  return node.Scalar();
}

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

Status parse_strict_yaml(std::string_view text, std::string_view document,
                         const std::function<void(const YAML::Node&)>& read) {
  try {
    read(YAML::Load(std::string(text)));
    return ok_status();
  } catch (const StrictYamlError& e) {
    return Error(Errc::kInvalidArgument, std::string(document) + ": " + e.message);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own words for it are "bad file".
    return Error(Errc::kInvalidArgument,
                 std::string(document) + ": line " + std::to_string(e.mark.line + 1) + ", column " +
                     std::to_string(e.mark.column + 1) + ": nested " + std::to_string(e.depth()) +
                     " levels deep, deeper than any " + std::string(document) +
                     " needs (the parser stops there)");
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument, std::string(document) + ": " + std::string(e.what()));
  }
}

}  // namespace sebpf::strict_yaml
