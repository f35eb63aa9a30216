// Domain names as users write them in rules: case-insensitive, a trailing
// dot ignored, and anything that is not a valid DNS name rejected with the
// reason.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace sebpf::policy {

// The canonical form ("Example.COM." -> "example.com"), or an error saying
// what is wrong. Labels are 1-63 letters, digits, '-' (not first or last)
// or '_' (as in SRV names); at most 253 characters in all. Wildcards are
// refused: a rule for a name already covers all its subdomains.
Result<std::string> normalize_domain(std::string_view text);

}  // namespace sebpf::policy
