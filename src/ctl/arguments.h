// Values superebpfctl takes on its command line, checked before anything is
// sent: a mistake is reported by the CLI itself, naming the option.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "superebpf/v1/daemon.pb.h"

namespace sebpf::ctl {

namespace v1 = ::superebpf::v1;

// disabled | allowlist | denylist | block_all (block-all too).
Result<v1::Mode> parse_mode(std::string_view text);
std::string_view mode_name(v1::Mode mode);

// allow | deny.
Result<v1::Action> parse_action(std::string_view text);
std::string_view action_name(v1::Action action);

// A TTL: whole seconds ("90") or a number with one unit ("90s", "15m",
// "12h", "7d"). Zero is refused: a rule without --ttl never expires.
Result<uint64_t> parse_ttl(std::string_view text);

// KEY=VALUE (the value may be empty and may contain '=').
Result<std::pair<std::string, std::string>> parse_metadata(std::string_view text);

}  // namespace sebpf::ctl
