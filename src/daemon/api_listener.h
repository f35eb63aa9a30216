// The API's unix socket, and who may use it. The daemon accepts each
// connection itself, reads the peer's credentials from the kernel
// (SO_PEERCRED, SO_PEERGROUPS), and hands the connection to one of two
// in-process gRPC servers: the real DaemonService for trusted callers, or
// a refuser that answers every call with PERMISSION_DENIED and the reason
// code PEER_NOT_ALLOWED. Deciding per connection, before any call is read,
// means no handler can run for an untrusted peer, whatever it sends.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/fd_store.h"
#include "daemon/logger.h"

namespace sebpf::daemon {

inline constexpr char kPeerNotAllowedReason[] = "PEER_NOT_ALLOWED";

struct PeerPolicy {
  // Root is always trusted; others when their uid, primary gid or one of
  // their supplementary groups is listed.
  std::vector<uint32_t> allowed_uids;
  std::vector<uint32_t> allowed_gids;

  bool allows(uint32_t uid, const std::vector<uint32_t>& gids) const;
};

struct ListenerOptions {
  std::string socket_path;
  std::string socket_group;  // name or number; empty: root's group
  PeerPolicy peers;
};

// A listening socket this process did not make itself.
struct InheritedListener {
  UniqueFd fd;  // invalid: none
  // Kept by systemd (a socket unit's, superebpfd.socket, or one its file
  // descriptor store kept, FdStore) across stops and restarts: no stop
  // removes its file. Otherwise the process a reload replaced made it, and
  // this one's stop removes it.
  bool from_systemd = false;
};

class ApiListener {
 public:
  // Creates the socket (mode 0660, group `socket_group`; a stale socket file
  // from an earlier run is replaced) and starts serving `service`.
  // `inherited`: the listening socket of the process this one replaced (a
  // reload) or systemd's, served instead if it is on socket_path; the
  // connections queued in it meanwhile are served too.
  static Result<std::unique_ptr<ApiListener>> start(const ListenerOptions& options,
                                                    grpc::Service* service, Logger& log,
                                                    InheritedListener inherited = {});
  ~ApiListener();
  ApiListener(const ApiListener&) = delete;
  ApiListener& operator=(const ApiListener&) = delete;

  // Stops accepting, ends the servers (calls running get up to 2 s to
  // finish; then idle connections are cut within 100 ms) and removes the
  // socket file, unless handed over or systemd's.
  void stop();
  // A descriptor of the listening socket (close-on-exec) for the process a
  // reload starts; stop() then leaves the socket file in place.
  Result<InheritedListener> hand_over();
  // Puts the listening socket in systemd's file descriptor store, unless
  // systemd keeps it already: the process systemd starts next serves it,
  // and calls made during a restart wait. If systemd took it, no stop
  // removes the socket file (the store's socket needs it). A socket bound
  // again later (bind_again) goes in the store in its place. `store`
  // outlives this listener.
  void keep_in(FdStore& store);

 private:
  class Refuser;
  class CallCounter;
  ApiListener(const ListenerOptions& options, gid_t gid, Logger& log);
  void accept_loop();
  // The socket's directory, watched for the socket's file removed.
  void watch_socket_dir();
  // Whether the watch's events say the socket's file (or its directory)
  // went.
  bool socket_file_removed();
  // A socket whose file another program removed takes no connection: a
  // new one is bound at socket_path in its place, logged as an error.
  void bind_again();

  ListenerOptions options_;
  gid_t gid_;
  Logger& log_;
  // The accept thread replaces it (bind_again); others read it under the
  // lock.
  std::mutex listen_mu_;
  UniqueFd listen_fd_;
  FdStore* store_ = nullptr;  // keep_in's; under listen_mu_
  UniqueFd stop_fd_;          // eventfd: wakes the accept loop to stop
  UniqueFd watch_fd_;         // inotify: the socket's directory
  // Calls the servers are running (CallCounter): what stop() waits for.
  // Declared before the servers, which count into it until they go.
  std::atomic<int> calls_running_{0};
  std::unique_ptr<Refuser> refuser_;
  std::unique_ptr<grpc::Server> trusted_server_;
  std::unique_ptr<grpc::Server> refusing_server_;
  std::thread accept_thread_;
  std::atomic<bool> stopped_{false};
  bool handed_over_ = false;
  bool from_systemd_ = false;
};

}  // namespace sebpf::daemon
