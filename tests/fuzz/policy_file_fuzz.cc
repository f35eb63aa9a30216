// Arbitrary bytes as a policy file: parsing never crashes or throws, and a
// file that parses selects deterministically.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "policy/policy_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto file = sebpf::policy::parse_policy_file(text);
  if (!file.ok()) {
    if (file.error().code() != sebpf::Errc::kInvalidArgument) std::abort();
    return 0;
  }
  const std::map<std::string, std::string> metadata = {{"role", "agent"}};
  const auto first = file->select(metadata);
  const auto second = file->select(metadata);
  if (first.has_value() != second.has_value()) std::abort();
  if (first && (first->spec != second->spec || first->name != second->name)) std::abort();
  return 0;
}
