// systemd's file descriptor store (FileDescriptorStoreMax= in
// dist/systemd/superebpfd.service): the daemon keeps a copy of the API's
// listening socket and of each DNS endpoint's sockets there. systemd keeps
// the store while the service restarts (`systemctl restart`, or a crash and
// Restart=on-failure: it is released only once the service is stopped with
// no job queued for it) and passes the sockets to the next process, which
// serves them as after a reload: calls and queries sent meanwhile wait in
// their queues instead of meeting a closed socket. Without systemd (no
// NOTIFY_SOCKET) it does nothing.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/logger.h"

namespace sebpf::daemon {

// The name an endpoint's sockets are stored under ("dns-<attachment>"),
// and whether a name passed back at start is one.
std::string endpoint_store_name(uint64_t attachment);
bool is_endpoint_store_name(std::string_view name);
// The API's listening socket's.
inline constexpr const char* kApiStoreName = "api";

class FdStore {
 public:
  explicit FdStore(Logger& log) : log_(log) {}

  // What the store holds under `name` becomes `fds` (none: nothing).
  // Whether systemd was told (false without systemd, or on an error).
  bool put(const std::string& name, std::span<const int> fds);
  // Removes those of `names` (passed by systemd at start) that no put()
  // has named since: sockets of endpoints gone meanwhile, which the store
  // would otherwise keep open (and, for a container's endpoint, its
  // network namespace alive), or sockets this process closed.
  void forget_all_but_put(const std::vector<std::string>& names);

 private:
  // One message to systemd; false (and a warning, once) if it failed.
  bool notify(const std::string& state, std::span<const int> fds);

  Logger& log_;
  std::mutex mu_;
  std::set<std::string> put_;  // names put since start
  bool warned_ = false;
};

}  // namespace sebpf::daemon
