// A reload (SIGHUP) replaces the daemon with a fresh copy of its binary
// in the same process (execve), handing its DNS endpoints' sockets over:
// enforcement stays in the kernel as across any restart, and the
// endpoints' ports never close. Queries that arrive meanwhile wait in the
// sockets' queues for the new process.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "dns/inherited_sockets.h"

namespace sebpf::daemon {

// The path this process's binary was started from: what a reload runs,
// so that an upgrade that replaced the file is what runs next.
Result<std::string> own_executable();

// The sockets the process before handed over (kHandedOverSocketsVariable,
// removed from the environment); null when it names none. Descriptors that
// are not open or not an endpoint's socket are left out, each with the
// reason in `rejected`; a malformed variable is an error.
Result<std::unique_ptr<dns::InheritedSockets>> take_handed_over_sockets(
    std::vector<std::string>& rejected);

// Runs `executable` in this process with `argv` and the environment, the
// sockets handed over. Returns only if execve failed.
Error reexec(const std::string& executable, char** argv, std::vector<UniqueFd> sockets);

}  // namespace sebpf::daemon
