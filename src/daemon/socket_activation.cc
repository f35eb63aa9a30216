#include "daemon/socket_activation.h"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cstring>

namespace sebpf::daemon {

UniqueFd take_systemd_listener(std::vector<std::string>& problems) {
  // Also marks each passed descriptor close-on-exec.
  const int count = sd_listen_fds(/*unset_environment=*/1);
  if (count < 0) {
    problems.push_back(std::string("LISTEN_FDS: ") + std::strerror(-count));
    return UniqueFd();
  }
  UniqueFd listener;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
    UniqueFd passed(fd);
    const std::string which = "systemd passed descriptor " + std::to_string(fd);
    if (listener) {
      problems.push_back(which + " too, but only one socket is the API's: closed");
    } else if (sd_is_socket_unix(fd, SOCK_STREAM, /*listening=*/1, nullptr, 0) <= 0) {
      problems.push_back(which +
                         ", which is not a listening Unix stream socket (superebpfd.socket "
                         "needs ListenStream= the API socket's path): closed");
    } else {
      listener = std::move(passed);
    }
  }
  return listener;
}

}  // namespace sebpf::daemon
