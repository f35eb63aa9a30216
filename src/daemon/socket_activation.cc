#include "daemon/socket_activation.h"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "daemon/fd_store.h"

namespace sebpf::daemon {

SystemdSockets take_systemd_sockets(std::vector<std::string>& problems) {
  SystemdSockets out;
  char** names = nullptr;
  // Also marks each passed descriptor close-on-exec.
  const int count = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (count < 0) {
    problems.push_back(std::string("LISTEN_FDS: ") + std::strerror(-count));
    return out;
  }
  for (int i = 0; i < count; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    UniqueFd passed(fd);
    const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    const std::string which = "systemd passed descriptor " + std::to_string(fd) + " (" + name + ")";
    if (is_endpoint_store_name(name)) {
      out.dns.push_back(std::move(passed));
      out.names_to_check.push_back(name);
      continue;
    }
    if (sd_is_socket_unix(fd, SOCK_STREAM, /*listening=*/1, nullptr, 0) <= 0) {
      problems.push_back(which +
                         ", which is not a listening Unix stream socket (superebpfd.socket "
                         "needs ListenStream= the API socket's path): closed");
    } else if (out.api_listener) {
      problems.push_back(which + " too, but only one socket is the API's: closed");
    } else {
      out.api_listener = std::move(passed);
      continue;
    }
    out.names_to_check.push_back(name);
  }
  if (names != nullptr) {
    for (int i = 0; names[i] != nullptr; ++i) std::free(names[i]);
    std::free(names);
  }
  return out;
}

}  // namespace sebpf::daemon
