#include "daemon/socket_activation.h"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "daemon/fd_store.h"
#include "daemon/unix_socket_file.h"

namespace sebpf::daemon {

SystemdSockets take_systemd_sockets(const std::string& api_socket_path,
                                    std::vector<std::string>& problems) {
  SystemdSockets out;
  char** names = nullptr;
  // Also marks each passed descriptor close-on-exec.
  const int count = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (count < 0) {
    problems.push_back(std::string("LISTEN_FDS: ") + std::strerror(-count));
    return out;
  }
  struct Candidate {
    UniqueFd fd;
    std::string name;
    std::string which;
  };
  std::vector<Candidate> api;
  for (int i = 0; i < count; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    UniqueFd passed(fd);
    const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    const std::string which = "systemd passed descriptor " + std::to_string(fd) + " (" + name + ")";
    if (is_endpoint_store_name(name)) {
      out.dns.push_back(std::move(passed));
      out.names_to_check.push_back(name);
    } else if (sd_is_socket_unix(fd, SOCK_STREAM, /*listening=*/1, nullptr, 0) > 0) {
      api.push_back({std::move(passed), name, which});
    } else {
      problems.push_back(which +
                         ", which is not a listening Unix stream socket (superebpfd.socket "
                         "needs ListenStream= the API socket's path): closed");
      out.names_to_check.push_back(name);
    }
  }
  if (names != nullptr) {
    for (int i = 0; names[i] != nullptr; ++i) std::free(names[i]);
    std::free(names);
  }
  // Two when a socket unit's file was removed and the daemon bound its own,
  // which the store keeps: the one a connect() to the path reaches is
  // served. With none such, the first, which the API listener then says is
  // of no use.
  size_t served = 0;
  bool owns_file = false;
  for (size_t i = 0; i < api.size() && !owns_file; ++i) {
    auto owns = owns_socket_file(api[i].fd.get(), api_socket_path);
    owns_file = owns.ok() && *owns;
    if (owns_file) served = i;
  }
  for (size_t i = 0; i < api.size(); ++i) {
    if (i == served) {
      out.api_listener = std::move(api[i].fd);
      continue;
    }
    problems.push_back(
        api[i].which + ", a listening Unix stream socket, but only one is the API's: closed (" +
        (owns_file ? "the one whose file is at " + api_socket_path + " is served"
                   : "none has its file at " + api_socket_path + "; the first is served") +
        ")");
    out.names_to_check.push_back(api[i].name);
  }
  return out;
}

}  // namespace sebpf::daemon
