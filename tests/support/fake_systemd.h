// What systemd gives a service, played by a test: a notify socket
// (NOTIFY_SOCKET) whose messages it reads, keeping the descriptors the
// service stores there (FDSTORE=1, FDSTOREREMOVE=1, FDNAME=); and the
// descriptors it passes at each start (LISTEN_FDS, LISTEN_FDNAMES): a
// socket unit's, then the store's. DaemonProcess starts superebpfd under it.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace sebpf::testing {

class FakeSystemd {
 public:
  // The notify socket is made at <dir>/notify.sock.
  explicit FakeSystemd(const std::string& dir);
  bool valid() const { return static_cast<bool>(notify_); }
  const std::string& notify_socket() const { return path_; }

  // A socket unit's socket, passed first at each start under `name`.
  void add_socket_unit(UniqueFd fd, std::string name);
  // A socket unit's listening Unix stream socket at `path` (ListenStream=);
  // false if it could not be made.
  bool listen_stream(const std::string& path, std::string name);

  // The next message that is not about the store (READY=1, ...), taking
  // in those that are on the way; "(none)" if none came within `timeout`.
  std::string next_message(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Takes in the messages that came so far.
  void take_in();
  // How many descriptors the store holds under each name.
  std::map<std::string, size_t> stored() const;

  struct Passed {
    int fd;
    std::string name;
  };
  // What a start gets, in order; the descriptors stay this object's.
  std::vector<Passed> passed() const;

 private:
  // Reads one message if one comes within `timeout`.
  bool receive(std::chrono::milliseconds timeout);

  std::string path_;
  UniqueFd notify_;
  std::vector<std::pair<std::string, UniqueFd>> socket_units_;
  std::map<std::string, std::vector<UniqueFd>> store_;
  std::deque<std::string> messages_;
};

}  // namespace sebpf::testing
