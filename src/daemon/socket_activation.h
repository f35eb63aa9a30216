// The sockets systemd passes the daemon at start (LISTEN_FDS,
// LISTEN_FDNAMES): the API's, when a socket unit makes it
// (dist/systemd/superebpfd.socket), so that API calls made during a
// restart wait in its queue instead of failing; and DNS endpoints' sockets
// the process before kept in systemd's file descriptor store
// (daemon/fd_store.h), so that queries sent meanwhile wait in theirs.
#pragma once

#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace sebpf::daemon {

struct SystemdSockets {
  UniqueFd api_listener;  // a listening Unix stream socket; invalid: none
  std::vector<UniqueFd> dns;
  // Names of what was passed that the store may hold for nothing: the DNS
  // sockets' (those of endpoints gone meanwhile are), and those of sockets
  // closed here. FdStore::forget_all_but_put takes them.
  std::vector<std::string> names_to_check;
};

// What systemd passed this process, each close-on-exec. Of the listening
// Unix stream sockets, the API's is the one whose file is at
// `api_socket_path` (owns_socket_file), else the first. Anything else it
// passed is closed and named in `problems`. Takes the variables out of the
// environment, so that no process started from this one reads them.
SystemdSockets take_systemd_sockets(const std::string& api_socket_path,
                                    std::vector<std::string>& problems);

}  // namespace sebpf::daemon
