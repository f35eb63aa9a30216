// superebpfd end to end, the daemon's life: a SIGKILL and restart keeps
// ids, policy and enforcement; a clean stop leaves enforcement unless told
// to detach; systemd is told of each step; API calls through a reload or a
// socket-activated restart wait rather than fail; the API socket is bound
// again when removed; the log is JSON lines; a damaged state file and
// paths another user could write are refused.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "daemon_e2e_helpers.h"
#include "daemon_fixture.h"
#include "support/process.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

// A client calling List every 5 ms from a thread of its own until
// finish(): what one sees across a reload or a restart. A call that reaches
// the old process as its gRPC server shuts down may be CANCELLED (the
// server cancels the calls it has not started, grpc/grpc#41785); clients
// retry those, so they are counted apart from failures.
class ApiCaller {
 public:
  explicit ApiCaller(v1::DaemonService::Stub& stub) : thread_([this, &stub] { run(stub); }) {}
  ~ApiCaller() { finish(); }
  ApiCaller(const ApiCaller&) = delete;
  ApiCaller& operator=(const ApiCaller&) = delete;

  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After finish(): no call failed but for at most `most_cancelled`.
  void expect_served(int most_cancelled) const {
    EXPECT_TRUE(failures_.empty())
        << failures_.size() << " calls failed, the first: " << failures_.front();
    EXPECT_LE(cancelled_, most_cancelled) << "of " << calls_;
    EXPECT_GT(calls_, 20);
  }

 private:
  void run(v1::DaemonService::Stub& stub) {
    while (!stop_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(soon());
      v1::ListResponse list;
      const grpc::Status status = stub.List(&ctx, v1::ListRequest(), &list);
      ++calls_;
      if (status.error_code() == grpc::StatusCode::CANCELLED) {
        ++cancelled_;
      } else if (!status.ok()) {
        failures_.push_back(std::to_string(status.error_code()) + " " + status.error_message());
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  std::atomic<bool> stop_{false};
  int calls_ = 0;
  int cancelled_ = 0;
  std::vector<std::string> failures_;
  std::thread thread_;  // last: started once the counts exist
};

// A workload keeps probing an allowed and a denied address while the
// daemon is SIGKILLed and started again: no probe ever sees the wrong
// answer, and the new daemon has the same ids, metadata and policy.
TEST_F(DaemonE2eTest, SigkillAndRestartKeepIdsPolicyAndEnforcement) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att =
      attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}), {{"tenant", "t1"}});
  const v1::Policy before = get_policy(att.id());

  const std::string marker = dir() + "/probing";
  std::ofstream(marker).put('1');
  Child prober([&] {
    if (!cgroup_->add_self()) return 82;
    int rounds = 0;
    while (std::filesystem::exists(marker) || rounds < 5) {
      if (tcp_echo("198.51.100.2", kEchoPort) != 0) return 1;      // allowed traffic cut
      if (tcp_echo("198.51.100.3", kEchoPort) != EPERM) return 2;  // denied traffic let out
      ++rounds;
    }
    return 0;
  });

  std::this_thread::sleep_for(milliseconds(300));
  daemon_->kill9();
  // The gap: no daemon at all.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  std::this_thread::sleep_for(milliseconds(300));
  start_daemon();
  std::this_thread::sleep_for(milliseconds(300));
  std::filesystem::remove(marker);
  EXPECT_EQ(prober.wait(std::chrono::seconds(20)), 0) << "1: allowed cut, 2: denied let out";

  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  ASSERT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(list.attachments(0).id(), att.id());
  EXPECT_EQ(list.attachments(0).metadata().at("tenant"), "t1");
  EXPECT_EQ(list.attachments(0).dns().port(), att.dns().port());
  EXPECT_EQ(get_policy(att.id()).SerializeAsString(), before.SerializeAsString());
  EXPECT_NE(daemon_->log().find("attachment_adopted"), std::string::npos);
  // Ids keep counting from where they were.
  TestCgroup second("sebpf-second-" + topo_->tag());
  v1::AttachRequest req;
  req.set_cgroup_path(second.path());
  v1::Attachment att2;
  ASSERT_TRUE(attach(req, &att2).ok());
  EXPECT_NE(att2.id(), att.id());
}

TEST_F(DaemonE2eTest, CleanStopLeavesEnforcementUnlessAskedToDetach) {
  topo_->start_peer_server();
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}));
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  start_daemon({"--detach-on-exit"});
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_FALSE(std::filesystem::exists(pin_dir_ + "/links"));
}

// Under systemd (Type=notify in dist/systemd), READY=1 is sent once the API
// answers, so that a unit ordered after superebpfd (a container runtime
// attaching each container) never finds it absent; RELOADING=1 and READY=1 across a
// reload, STOPPING=1 at a stop.
TEST_F(DaemonE2eTest, SystemdIsToldWhenTheDaemonServesReloadsAndStops) {
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid());
  daemon_ = std::make_unique<DaemonProcess>(SEBPF_DAEMON_PATH, dir(), pin_dir_,
                                            std::vector<std::string>{}, &systemd);
  const std::string ready = systemd.next_message();
  EXPECT_TRUE(ready.starts_with("READY=1")) << ready;
  // At that instant the API answers at its first try.
  grpc::ClientContext ctx;
  ctx.set_deadline(soon());
  v1::ListResponse list;
  stub_ = v1::DaemonService::NewStub(
      grpc::CreateChannel("unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  EXPECT_TRUE(stub_->List(&ctx, v1::ListRequest(), &list).ok());
  EXPECT_NE(daemon_->log().find("\"event\":\"ready\""), std::string::npos);

  // A reload (systemctl reload: SIGHUP) re-executes the daemon in the same
  // process: systemd hears it begin, and end once the new one serves.
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_EQ(systemd.next_message(), "RELOADING=1");
  const std::string reloaded = systemd.next_message();
  EXPECT_TRUE(reloaded.starts_with("READY=1")) << reloaded;

  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_EQ(systemd.next_message(), "STOPPING=1");
}

// A reload re-executes the daemon in the same process, handing over the
// API's listening socket: a client calling meanwhile is made to wait, not
// refused for want of a daemon.
TEST_F(DaemonE2eTest, ApiCallsThroughAReloadWaitForTheNewProcess) {
  start_daemon();
  ApiCaller caller(*stub_);
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  const bool reloaded = daemon_->wait_for_log("\"event\":\"ready\"", 2, std::chrono::seconds(15));
  std::this_thread::sleep_for(milliseconds(300));
  caller.finish();
  ASSERT_TRUE(reloaded) << daemon_->log();
  caller.expect_served(2);
  EXPECT_NE(daemon_->log().find("\"taken_over\":\"true\""), std::string::npos) << daemon_->log();
}

// Under systemd's socket activation the API socket is systemd's: it stays
// open while the daemon stops and starts again, so calls made during a
// restart wait for the next process instead of failing, and no stop (nor
// that of a process a reload started) removes its file.
TEST_F(DaemonE2eTest, UnderSocketActivationApiCallsThroughARestartWaitForTheNextProcess) {
  const std::string path = DaemonProcess::socket_in(dir());
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid() && systemd.listen_stream(path, "superebpfd.socket"))
      << strerror(errno);
  const auto start = [&] {
    daemon_ = std::make_unique<DaemonProcess>(SEBPF_DAEMON_PATH, dir(), pin_dir_,
                                              std::vector<std::string>{}, &systemd);
    return daemon_->wait_ready() != nullptr;
  };
  ASSERT_TRUE(start()) << daemon_->log();
  auto stub = v1::DaemonService::NewStub(
      grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials()));
  ApiCaller caller(*stub);
  std::this_thread::sleep_for(milliseconds(300));
  // A restart: the socket file outlives the stop, and calls meanwhile queue.
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the stop removed systemd's socket file";
  std::this_thread::sleep_for(milliseconds(200));
  const bool restarted = start();
  // A reload, then a stop: the process the reload started knows the
  // socket is systemd's.
  const bool reloaded = restarted && kill(daemon_->pid(), SIGHUP) == 0 &&
                        daemon_->wait_for_log("\"event\":\"ready\"", 3, std::chrono::seconds(15));
  std::this_thread::sleep_for(milliseconds(300));
  caller.finish();
  ASSERT_TRUE(restarted && reloaded) << daemon_->log();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the reloaded process's stop removed the file";
  caller.expect_served(4);
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"true\""), std::string::npos) << daemon_->log();
}

// The API's socket systemd kept for the next process (its file descriptor
// store) is of no use if its file was removed meanwhile (by hand, say): the
// next process says so, makes its own, and has systemd keep that one.
TEST_F(DaemonE2eTest, AStoredApiSocketWhoseFileIsGoneIsReplaced) {
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid());
  start_daemon({}, "", &systemd);
  EXPECT_EQ(daemon_->terminate(), 0);
  systemd.take_in();
  ASSERT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}}));
  ASSERT_EQ(unlink(daemon_->socket().c_str()), 0) << "the stop left the stored socket's file";
  start_daemon({}, "", &systemd);
  EXPECT_NE(daemon_->log().find("its file is gone"), std::string::npos) << daemon_->log();
  systemd.take_in();
  EXPECT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}})) << "replaced";
  EXPECT_EQ(daemon_->terminate(), 0);
  systemd.take_in();
  start_daemon({}, "", &systemd);  // the replacement serves
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"true\""), std::string::npos);
}

// A socket systemd passes that is not a listening Unix stream socket (a
// socket unit with ListenDatagram=, say) is named in the log and closed;
// the daemon makes its own API socket.
TEST_F(DaemonE2eTest, ASocketSystemdPassesThatIsNotTheApisIsNamedAndLeftOut) {
  FakeSystemd systemd(dir());
  UniqueFd datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(systemd.valid() && datagram);
  systemd.add_socket_unit(std::move(datagram), "superebpfd.socket");
  start_daemon({}, "", &systemd);
  EXPECT_NE(daemon_->log().find("systemd_socket_rejected"), std::string::npos) << daemon_->log();
  EXPECT_NE(daemon_->log().find("not a listening Unix stream socket"), std::string::npos);
  EXPECT_NE(daemon_->log().find("\"from_systemd\":\"false\""), std::string::npos);
}

// The log is JSON lines from start to stop. A stop takes the packet-socket
// filter off the host's interfaces; with nothing attached none has it (nor
// a qdisc for it), and the kernel's complaint at each detach went to the
// log as a line of plain text per interface.
TEST_F(DaemonE2eTest, TheLogIsJsonLinesFromStartToStop) {
  start_daemon({"--detach-on-exit"});
  EXPECT_EQ(daemon_->terminate(), 0);
  expect_log_is_json_lines();
}

// A control plane keeps its channel to the daemon open. gRPC's shutdown
// waits for such a connection as for a running call, until its deadline
// (2 s): every restart took that long while a client was connected. The
// daemon waits for running calls only.
// The API socket's file removed (a cleanup of /run) or moved away while
// the daemon runs: a socket is bound again at its path, as the start made
// it, so that clients find the daemon without a restart.
TEST_F(DaemonE2eTest, ARemovedApiSocketIsBoundAgain) {
  start_daemon();
  const std::string socket = daemon_->socket();
  const auto answers_anew = [&] {
    auto stub = v1::DaemonService::NewStub(
        grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ListResponse list;
    return stub->List(&ctx, v1::ListRequest(), &list).ok();
  };
  const auto bound = [&] {
    struct stat st {};
    return lstat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0660;
  };
  std::filesystem::remove(socket);
  EXPECT_TRUE(within(milliseconds(3000), bound)) << daemon_->log();
  EXPECT_TRUE(answers_anew());
  std::filesystem::rename(socket, socket + ".aside");
  EXPECT_TRUE(within(milliseconds(3000), bound)) << daemon_->log();
  EXPECT_TRUE(answers_anew());
  EXPECT_TRUE(daemon_->wait_for_log("\"event\":\"api_socket_restored\"", 2, milliseconds(100)));
  // Ours, as the first was: a stop removes it.
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_FALSE(std::filesystem::exists(socket));
}

// Under systemd, the socket bound again goes in its file descriptor store,
// and what the next start is passed is served only if its file is the one
// at the path. Here the next start is passed both the socket unit's, whose
// file was removed (its path now holds the new socket's file), and the
// stored one: the stale one, passed first, was served, and every call
// queued in the stored one unanswered; or, after the stop that follows,
// the daemon refused to start, since the path answered (systemd's socket).
TEST_F(DaemonE2eTest, AnApiSocketBoundAgainIsTheOneSystemdKeeps) {
  const std::string path = DaemonProcess::socket_in(dir());
  FakeSystemd systemd(dir());
  ASSERT_TRUE(systemd.valid() && systemd.listen_stream(path, "superebpfd.socket"))
      << strerror(errno);
  start_daemon({}, "", &systemd);
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"api_socket_restored\"", 1, milliseconds(3000)))
      << daemon_->log();
  systemd.take_in();
  EXPECT_EQ(systemd.stored(), (std::map<std::string, size_t>{{"api", 1}}));
  daemon_->kill9();  // a crash: the new socket's file stays
  start_daemon({}, "", &systemd);
  v1::ListResponse list;
  EXPECT_TRUE(call_list(&list).ok()) << daemon_->log();
  EXPECT_NE(daemon_->log().find("systemd_socket_rejected"), std::string::npos) << daemon_->log();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the stop removed the stored socket's file";
  systemd.take_in();
  start_daemon({}, "", &systemd);
  EXPECT_TRUE(call_list(&list).ok()) << daemon_->log();
}

TEST_F(DaemonE2eTest, AClientKeepingItsConnectionOpenDoesNotHoldUpAStop) {
  start_daemon();
  {
    grpc::ClientContext ctx;
    v1::ListRequest req;
    v1::ListResponse resp;
    ASSERT_TRUE(stub_->List(&ctx, req, &resp).ok());  // the channel is connected, and idle
  }
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(1))
      << "the stop waited for the idle connection";
}

TEST_F(DaemonE2eTest, DamagedStateFileIsReportedNotTrusted) {
  topo_->start_peer_server();
  start_daemon();
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  daemon_->kill9();
  {
    // Flip a byte of the header's checksum. (Writing a fixed value changed
    // nothing whenever the checksum already held it: one run in 256.)
    std::fstream f(state_file(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(20);
    const int byte = f.get();
    ASSERT_NE(byte, std::char_traits<char>::eof());
    f.seekp(20);
    f.put(static_cast<char>(byte ^ 0xff));
  }
  DaemonProcess broken(SEBPF_DAEMON_PATH, dir(), pin_dir_);
  EXPECT_EQ(broken.wait_exit(std::chrono::seconds(10)), 1);
  EXPECT_NE(broken.log().find("will not guess"), std::string::npos) << broken.log();
  // The kernel kept enforcing meanwhile.
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
}

// A path another user could write would let them choose the policy (the
// policy file) or replace what enforces it (the state, socket and pin
// directories). A start refuses such a path, naming it and the fix, and
// touches nothing; so does a reload, and the running daemon goes on.
TEST_F(DaemonE2eTest, PathsAnotherUserCouldWriteAreRefusedAtAStartAndAtAReload) {
  topo_->start_peer_server();
  // Its own directory: what it prints is no JSON log (TearDown reads ours).
  const std::string shared = dir() + "/shared";
  std::filesystem::create_directory(shared);
  ASSERT_EQ(chmod(shared.c_str(), 0777), 0);
  DaemonProcess refused(SEBPF_DAEMON_PATH, shared, pin_dir_);
  EXPECT_EQ(refused.wait_exit(std::chrono::seconds(10)), 2);
  EXPECT_NE(refused.log().find(shared + " is writable by every user"), std::string::npos)
      << refused.log();
  EXPECT_NE(refused.log().find("chmod o-w " + shared), std::string::npos) << refused.log();
  EXPECT_FALSE(std::filesystem::exists(pin_dir_)) << "nothing pinned";
  EXPECT_FALSE(std::filesystem::exists(shared + "/state")) << "nothing written";

  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\npolicies: []\n";
  start_daemon({"--policy-file", policy_path});
  attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));
  constexpr uid_t kNobody = 65534;
  ASSERT_EQ(chown(policy_path.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon_->wait_for_log("\"event\":\"reload_refused\"", 1, std::chrono::seconds(5)));
  EXPECT_NE(daemon_->log().find("policy_file " + policy_path + ": " + policy_path +
                                " is owned by uid 65534, not root"),
            std::string::npos)
      << daemon_->log();
  v1::ListResponse list;
  EXPECT_TRUE(call_list(&list).ok()) << "still serving";
  EXPECT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "and enforcing";
}

}  // namespace
}  // namespace sebpf::testing
