// superebpfctl's exit status, so scripts can tell failures apart without
// reading messages. docs/cli.md lists them.
#pragma once

#include "common/result.h"

namespace sebpf::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;          // internal error, anything else
inline constexpr int kExitUsage = 2;            // bad command line
inline constexpr int kExitUnreachable = 3;      // no daemon answering on the socket
inline constexpr int kExitPermission = 4;       // caller or daemon not allowed
inline constexpr int kExitNotFound = 5;         // unknown id, target, rule
inline constexpr int kExitInvalid = 6;          // the daemon refused a field
inline constexpr int kExitAlreadyAttached = 7;  // the target is attached already
inline constexpr int kExitCannotNow = 8;        // full, unsupported, wrong state

int exit_code_for(Errc code);

}  // namespace sebpf::ctl
