// Files the daemon reads whole: its configuration, the policy file,
// resolv.conf.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sebpf {

// Past this such a file is a mistake (a policy of a million rules is a few
// tens of MiB), not something to read into memory.
constexpr size_t kMaxTextFileBytes = size_t{64} << 20;

// The whole regular file at `path`, at most kMaxTextFileBytes, or an error
// saying why not (`what` names it: "policy file").
Result<std::string> read_text_file(const std::string& path, std::string_view what);

}  // namespace sebpf
