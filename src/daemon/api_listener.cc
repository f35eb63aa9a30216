#include "daemon/api_listener.h"

#include <fcntl.h>
#include <grp.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server_posix.h>
#include <grpcpp/support/server_interceptor.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <filesystem>

#include "daemon/unix_socket_file.h"
#include "net/socket_options.h"

namespace sebpf::daemon {

namespace {

struct PeerCredentials {
  pid_t pid = 0;
  uint32_t uid = 0;
  std::vector<uint32_t> gids;  // primary first, then supplementary
};

Result<PeerCredentials> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::from_errno(errno, "SO_PEERCRED");
  }
  PeerCredentials peer{cred.pid, cred.uid, {cred.gid}};
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      peer.gids.insert(peer.gids.end(), groups.begin(), groups.end());
      return peer;
    }
    if (errno != ERANGE) return Error::from_errno(errno, "SO_PEERGROUPS");
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return Error(Errc::kInternal, "SO_PEERGROUPS kept growing");
}

Result<gid_t> resolve_group(const std::string& group) {
  if (group.empty()) return gid_t{0};
  gid_t gid = 0;
  const auto [end, ec] = std::from_chars(group.data(), group.data() + group.size(), gid);
  if (ec == std::errc() && end == group.data() + group.size()) return gid;
  std::vector<char> buf(16384);
  struct group entry {};
  struct group* found = nullptr;
  const int err = getgrnam_r(group.c_str(), &entry, buf.data(), buf.size(), &found);
  if (err != 0) return Error::from_errno(err, "look up group " + group);
  if (found == nullptr) {
    return Error(Errc::kNotFound, "socket.group: there is no group named \"" + group + "\"");
  }
  return found->gr_gid;
}

// The path a listening unix stream socket is bound to.
Result<std::string> listening_path(int fd) {
  SEBPF_ASSIGN_OR_RETURN(const int type,
                         net::int_socket_option(fd, SO_TYPE, "read the socket's type"));
  if (type != SOCK_STREAM) return Error(Errc::kInvalidArgument, "not a stream socket");
  SEBPF_ASSIGN_OR_RETURN(const int listening,
                         net::int_socket_option(fd, SO_ACCEPTCONN, "read whether it listens"));
  if (listening == 0) return Error(Errc::kInvalidArgument, "a stream socket that does not listen");
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::from_errno(errno, "read the socket's address");
  }
  if (addr.sun_family != AF_UNIX || len <= offsetof(sockaddr_un, sun_path) ||
      addr.sun_path[0] == '\0') {
    return Error(Errc::kInvalidArgument, "not a unix socket with a path");
  }
  return std::string(addr.sun_path, strnlen(addr.sun_path, len - offsetof(sockaddr_un, sun_path)));
}

// Why the socket bound to `path` takes no connection made there, or "" if
// it does.
std::string why_file_gone(int fd, const std::string& path) {
  struct stat file {};
  if (lstat(path.c_str(), &file) != 0 || !S_ISSOCK(file.st_mode)) return "its file is gone";
  auto owns = owns_socket_file(fd, path);
  // Without unix_diag nothing tells: a socket's file is taken for its own.
  if (owns.ok() && !*owns) return "its file is gone; another socket's is there";
  return "";
}

// A new unix stream socket bound to `path`.
Result<UniqueFd> bind_socket(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "create the API socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Error::from_errno(errno, "bind " + path);
  }
  return fd;
}

// Until chmod/chown only root can connect (bind gives 0777 & ~umask, and
// connecting needs write permission): nobody slips in before we are done.
Status secure_and_listen(int fd, const std::string& path, gid_t gid) {
  if (chown(path.c_str(), 0, gid) != 0) return Error::from_errno(errno, "chown " + path);
  if (chmod(path.c_str(), 0660) != 0) return Error::from_errno(errno, "chmod " + path);
  if (listen(fd, 128) != 0) return Error::from_errno(errno, "listen " + path);
  return ok_status();
}

}  // namespace

bool PeerPolicy::allows(uint32_t uid, const std::vector<uint32_t>& gids) const {
  if (uid == 0) return true;
  if (std::find(allowed_uids.begin(), allowed_uids.end(), uid) != allowed_uids.end()) return true;
  return std::any_of(gids.begin(), gids.end(), [&](uint32_t gid) {
    return std::find(allowed_gids.begin(), allowed_gids.end(), gid) != allowed_gids.end();
  });
}

// Answers every call, of any method, with PERMISSION_DENIED.
class ApiListener::Refuser final : public grpc::CallbackGenericService {
 public:
  explicit Refuser(Logger& log) : log_(log) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    log_.warning("call_refused", {{"method", ctx->method()}, {"reason", kPeerNotAllowedReason}});
    ctx->AddTrailingMetadata("superebpf-reason", kPeerNotAllowedReason);
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() {
        Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                            std::string(kPeerNotAllowedReason) +
                                ": this user may not use superebpfd (see socket.allowed_uids "
                                "and socket.allowed_gids in the daemon's configuration)"));
      }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }

 private:
  Logger& log_;
};

ApiListener::ApiListener(const ListenerOptions& options, gid_t gid, Logger& log)
    : options_(options), gid_(gid), log_(log) {}

// Counts the calls a server is running, from when a call arrives until it
// is done, so that stop() can tell them from connections a client merely
// keeps open. gRPC's own shutdown cannot: it waits for either until its
// deadline, so one idle channel held every stop for the whole of it.
class ApiListener::CallCounter final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounter(std::atomic<int>& running) : running_(running) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* /*info*/) override {
    return new Counted(running_);  // gRPC owns it, and deletes it when the call is done
  }

 private:
  class Counted final : public grpc::experimental::Interceptor {
   public:
    explicit Counted(std::atomic<int>& running) : running_(running) { running_.fetch_add(1); }
    ~Counted() override { running_.fetch_sub(1); }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      methods->Proceed();
    }

   private:
    std::atomic<int>& running_;
  };

  std::atomic<int>& running_;
};

Result<std::unique_ptr<ApiListener>> ApiListener::start(const ListenerOptions& options,
                                                        grpc::Service* service, Logger& log,
                                                        InheritedListener inherited) {
  UniqueFd& handed_over = inherited.fd;
  const std::string& path = options.socket_path;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return Error(Errc::kInvalidArgument,
                 "socket.path: longer than " + std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  SEBPF_ASSIGN_OR_RETURN(gid_t gid, resolve_group(options.socket_group));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Error(Errc::kFailedPrecondition, "create the socket's directory: " + ec.message());

  if (handed_over) {
    auto bound_to = listening_path(handed_over.get());
    // A socket whose file someone removed can take no connection, even
    // where another socket's file is at the path now.
    std::string file_gone;
    if (bound_to.ok() && *bound_to == path) file_gone = why_file_gone(handed_over.get(), path);
    if (!bound_to.ok() || *bound_to != path || !file_gone.empty()) {
      std::string reason = !bound_to.ok()       ? bound_to.error().message()
                           : !file_gone.empty() ? file_gone
                                                : "socket.path is " + path;
      log.warning("api_socket_not_taken_over",
                  {{"socket", bound_to.ok() ? *bound_to : ""},
                   {"from", inherited.from_systemd ? "systemd" : "reload"},
                   {"reason", reason}});
      // The process before left its socket file for this one; systemd's
      // stays systemd's.
      struct stat old {};
      if (!inherited.from_systemd && bound_to.ok() && lstat(bound_to->c_str(), &old) == 0 &&
          S_ISSOCK(old.st_mode)) {
        unlink(bound_to->c_str());
      }
      handed_over.reset();
    }
  }
  struct stat st {};
  if (!handed_over && lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error(Errc::kFailedPrecondition,
                   "socket.path: " + path + " exists and is not a socket; not removing it");
    }
    // A daemon still serving it would answer a connect: refuse to steal it.
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return Error(Errc::kAlreadyExists,
                   "socket.path: another superebpfd is serving " + path + " already");
    }
    unlink(path.c_str());
  }

  std::unique_ptr<ApiListener> self(new ApiListener(options, gid, log));
  const bool taken_over = static_cast<bool>(handed_over);
  if (handed_over) {
    self->listen_fd_ = std::move(handed_over);
    self->from_systemd_ = inherited.from_systemd;
  } else {
    SEBPF_ASSIGN_OR_RETURN(self->listen_fd_, bind_socket(path));
  }
  SEBPF_RETURN_IF_ERROR(secure_and_listen(self->listen_fd_.get(), path, gid));
  self->stop_fd_.reset(eventfd(0, EFD_CLOEXEC));
  if (!self->stop_fd_) return Error::from_errno(errno, "eventfd");
  self->watch_fd_.reset(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!self->watch_fd_) return Error::from_errno(errno, "inotify_init1");
  self->watch_socket_dir();
  self->bind_again();  // removed before the watch began

  const auto counted = [&](grpc::ServerBuilder& builder) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counters;
    counters.push_back(std::make_unique<CallCounter>(self->calls_running_));
    builder.experimental().SetInterceptorCreators(std::move(counters));
  };
  grpc::ServerBuilder trusted;
  trusted.RegisterService(service);
  counted(trusted);
  self->trusted_server_ = trusted.BuildAndStart();
  self->refuser_ = std::make_unique<Refuser>(log);
  grpc::ServerBuilder refusing;
  refusing.RegisterCallbackGenericService(self->refuser_.get());
  counted(refusing);
  self->refusing_server_ = refusing.BuildAndStart();
  if (!self->trusted_server_ || !self->refusing_server_) {
    return Error(Errc::kInternal, "could not start the gRPC servers");
  }
  // Before the accept thread, which may bind again (bind_again).
  log.info("api_listening", {{"socket", path},
                             {"group", std::to_string(gid)},
                             {"taken_over", taken_over ? "true" : "false"},
                             {"from_systemd", self->from_systemd_ ? "true" : "false"}});
  self->accept_thread_ = std::thread([raw = self.get()] { raw->accept_loop(); });
  return self;
}

void ApiListener::watch_socket_dir() {
  const std::string dir = std::filesystem::path(options_.socket_path).parent_path().string();
  if (inotify_add_watch(watch_fd_.get(), dir.c_str(),
                        IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) <
      0) {
    log_.warning("api_socket_watch_failed", {{"dir", dir}, {"error", errno_text(errno)}});
  }
}

bool ApiListener::socket_file_removed() {
  const std::string name = std::filesystem::path(options_.socket_path).filename().string();
  alignas(inotify_event) char buf[4096];
  bool removed = false;
  ssize_t n;
  while ((n = read(watch_fd_.get(), buf, sizeof buf)) > 0) {
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      // The directory removed or moved away (its watch ends: IN_IGNORED),
      // or the socket's file, or events lost.
      removed = removed ||
                (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW)) != 0 ||
                (ev->len > 0 && name == ev->name);
    }
  }
  return removed;
}

void ApiListener::bind_again() {
  const std::string& path = options_.socket_path;
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) return;  // still there, or another program's now
  std::error_code ec;                         // a failure shows in the bind's error
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  auto fd = bind_socket(path);
  Status listening = fd.ok() ? secure_and_listen(fd->get(), path, gid_) : fd.error();
  if (!listening.ok()) {
    if (fd.ok()) unlink(path.c_str());  // our file; a bind that failed made none
    log_.error("api_socket_not_restored",
               {{"socket", path},
                {"error", listening.error().message()},
                {"impact", "API calls cannot connect until a reload or a restart"}});
    return;
  }
  bool kept_by_systemd = false;
  {
    std::lock_guard lock(listen_mu_);
    listen_fd_ = std::move(*fd);
    // In the store in the old one's place, if there is one: the process
    // systemd starts next serves this one. Else ours: a stop removes it.
    const int stored = listen_fd_.get();
    kept_by_systemd = store_ != nullptr && store_->put(kApiStoreName, std::span(&stored, 1));
    from_systemd_ = kept_by_systemd;
  }
  watch_socket_dir();
  log_.error("api_socket_restored", {{"socket", path},
                                     {"reason", "another program removed it"},
                                     {"kept_by_systemd", kept_by_systemd ? "true" : "false"}});
}

void ApiListener::accept_loop() {
  pollfd fds[3] = {
      {listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {watch_fd_.get(), POLLIN, 0}};
  while (true) {
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      log_.error("api_accept_failed", {{"error", errno_text(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[2].revents != 0) {
      // A socket whose file is gone takes no connection: bound again
      // where clients look for it.
      if (socket_file_removed()) bind_again();
      fds[0].fd = listen_fd_.get();  // this thread alone changes it
      continue;
    }
    // gRPC drives the connection with its own event loop: it must not block.
    const int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        log_.warning("api_accept_failed", {{"error", errno_text(errno)}});
      }
      continue;
    }
    auto peer = peer_credentials(fd);
    if (peer.ok() && options_.peers.allows(peer->uid, peer->gids)) {
      log_.debug("api_connection",
                 {{"uid", std::to_string(peer->uid)}, {"pid", std::to_string(peer->pid)}});
      grpc::AddInsecureChannelFromFd(trusted_server_.get(), fd);
      continue;
    }
    if (peer.ok()) {
      log_.warning("api_peer_refused", {{"uid", std::to_string(peer->uid)},
                                        {"gid", std::to_string(peer->gids.front())},
                                        {"pid", std::to_string(peer->pid)},
                                        {"reason", kPeerNotAllowedReason}});
    } else {
      log_.warning("api_peer_refused",
                   {{"error", peer.error().message()}, {"reason", kPeerNotAllowedReason}});
    }
    grpc::AddInsecureChannelFromFd(refusing_server_.get(), fd);
  }
}

void ApiListener::stop() {
  if (stopped_.exchange(true)) return;
  if (accept_thread_.joinable()) {
    const uint64_t one = 1;
    if (write(stop_fd_.get(), &one, sizeof one) < 0) {
      log_.error("api_stop_failed", {{"error", errno_text(errno)}});
    }
    accept_thread_.join();
  }
  std::unique_lock listening(listen_mu_);
  const bool bound = static_cast<bool>(listen_fd_);
  listen_fd_.reset();
  const bool systemds = from_systemd_;
  listening.unlock();
  // Calls running get up to 2 s to finish. Then the servers end with a
  // short deadline, which cuts the connections clients keep open (a
  // control plane's channel, say): ended with the long one, any such
  // connection held the stop for all of it. A call that comes in between
  // gets that short deadline to finish, or is cancelled.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (calls_running_.load() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(100);
  if (trusted_server_) trusted_server_->Shutdown(deadline);
  if (refusing_server_) refusing_server_->Shutdown(deadline);
  if (bound && !handed_over_ && !systemds) unlink(options_.socket_path.c_str());
}

Result<InheritedListener> ApiListener::hand_over() {
  std::lock_guard lock(listen_mu_);
  UniqueFd copy(fcntl(listen_fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return Error::from_errno(errno, "duplicate the API socket");
  handed_over_ = true;
  return InheritedListener{std::move(copy), from_systemd_};
}

void ApiListener::keep_in(FdStore& store) {
  std::lock_guard lock(listen_mu_);
  store_ = &store;
  if (from_systemd_) return;
  const int fd = listen_fd_.get();
  if (store.put(kApiStoreName, std::span(&fd, 1))) from_systemd_ = true;
}

ApiListener::~ApiListener() { stop(); }

}  // namespace sebpf::daemon
