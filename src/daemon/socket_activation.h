// systemd socket activation (dist/systemd/superebpfd.socket): systemd makes
// the API's socket and keeps it while the daemon stops and starts again, so
// API calls made during a restart wait in its queue instead of failing.
#pragma once

#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace sebpf::daemon {

// The listening Unix stream socket systemd passed this process (LISTEN_FDS,
// LISTEN_PID), close-on-exec; invalid when none. Anything else it passed is
// closed and named in `problems`. Takes the variables out of the
// environment, so that no process started from this one reads them.
UniqueFd take_systemd_listener(std::vector<std::string>& problems);

}  // namespace sebpf::daemon
