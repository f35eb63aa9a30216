// A file that is either wholly the last state written or reported as
// damaged, never half of one: written to a temporary file, fsync'ed, renamed
// over the old one (and the directory fsync'ed), and read back only when its
// magic, length and CRC-32 all agree. The payload is opaque bytes; the
// daemon keeps its serialized state in it.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace sebpf::state {

// Atomically replaces `path` with `payload`. Creates the file with mode 0600,
// and its directory if it is missing (another program may have removed it
// since the daemon made it).
Status write_state_file(const std::string& path, std::string_view payload);

// The payload last written to `path`. Errc::kNotFound when there is none;
// Errc::kFailedPrecondition, saying what is wrong, when the file is damaged
// (truncated, corrupted, or not a state file at all).
Result<std::string> read_state_file(const std::string& path);

}  // namespace sebpf::state
