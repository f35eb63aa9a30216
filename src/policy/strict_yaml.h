// Strict reading of YAML documents (policy files, the daemon's config):
// unknown and repeated keys, wrong types and bad values are errors naming
// the line, never silently ignored. yaml-cpp reports with exceptions; these
// helpers throw StrictYamlError, and each parser turns it into an Error at
// its one boundary (see parse_strict_yaml).
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sebpf::strict_yaml {

struct StrictYamlError {
  std::string message;
};

// Throws StrictYamlError: "line N: what".
[[noreturn]] void fail(const YAML::Node& at, const std::string& what);

std::string scalar(const YAML::Node& node, const std::string& what);

// A mapping's entries, refusing keys not in `allowed` (unless it is empty)
// and keys given twice (yaml-cpp would keep one silently).
std::map<std::string, YAML::Node> entries(const YAML::Node& node, const std::string& what,
                                          const std::set<std::string>& allowed);

std::vector<std::string> scalar_list(const YAML::Node& node, const std::string& what);

// Parses `text` and runs `read` on the root, turning every exception into
// Errc::kInvalidArgument prefixed with `document` ("policy file: line 3: ...").
Status parse_strict_yaml(std::string_view text, std::string_view document,
                         const std::function<void(const YAML::Node&)>& read);

}  // namespace sebpf::strict_yaml
