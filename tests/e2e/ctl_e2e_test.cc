// superebpfctl end to end: the CLI binary against a real superebpfd, with
// real traffic checking that what the CLI set is what the kernel enforces;
// exit statuses a script can rely on; calls through reloads all done; a
// caller whose uid is not allowed is refused with the daemon's reason.
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon_fixture.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

// The uid and gid of "nobody"/"nogroup" on Debian.
constexpr uid_t kNobody = 65534;

class CtlE2eTest : public DaemonE2eTest {
 protected:
  CommandResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {SEBPF_CTL_PATH, "--socket", daemon_->socket()});
    return run_command(args);
  }
  // Runs superebpfctl and parses its -o json output; fails the test on a
  // non-zero exit.
  nlohmann::json ctl_json(std::vector<std::string> args) {
    args.insert(args.end(), {"-o", "json"});
    const CommandResult r = ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  }
};

TEST_F(CtlE2eTest, PolicySetThroughTheCliIsWhatTheKernelEnforces) {
  topo_->start_peer_server();
  start_daemon();
  const nlohmann::json att =
      ctl_json({"attach", "--cgroup", cgroup_->path(), "--meta", "vm=7", "--meta", "tenant=a",
                "--mode", "allowlist", "--allow-cidr", "198.51.100.2"});
  ASSERT_TRUE(att.is_object());
  const std::string id = att.value("id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(att["metadata"]["tenant"], "a");
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  EXPECT_EQ(ctl({"allow-cidr", id, "198.51.100.3", "--ttl", "10m"}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  EXPECT_EQ(ctl({"deny-cidr", id, "198.51.100.0/24"}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0)
      << "the longer allow prefix decides";
  EXPECT_EQ(ctl({"remove-cidr", id, "198.51.100.3"}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(ctl({"allow-domain", id, "Mirror.Example.ORG."}).exit_code, 0);
  EXPECT_EQ(ctl({"deny-domain", id, "private.mirror.example.org"}).exit_code, 0);

  // The human table shows what is in force.
  const CommandResult table = ctl({"policy", id});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.output.find("allowlist"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("198.51.100.0/24  deny"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("mirror.example.org"), std::string::npos) << table.output;

  // What `policy -o json` prints reads back through replace-policy, with
  // what is left of each TTL; then block_all cuts everything.
  EXPECT_EQ(ctl({"allow-cidr", id, "203.0.113.5", "--ttl", "1h"}).exit_code, 0);
  {
    const v1::Policy before = get_policy(id);
    const CommandResult printed = ctl({"policy", id, "-o", "json"});
    ASSERT_EQ(printed.exit_code, 0);
    const std::string file = dir() + "/policy.json";
    std::ofstream(file) << printed.output;
    EXPECT_EQ(ctl({"replace-policy", id, "--file", file}).exit_code, 0);
    const v1::Policy after = get_policy(id);
    EXPECT_EQ(after.mode(), before.mode());
    EXPECT_EQ(after.dns_mode(), before.dns_mode());
    EXPECT_EQ(after.domains_size(), before.domains_size());
    ASSERT_EQ(after.cidrs_size(), before.cidrs_size());
    for (int i = 0; i < after.cidrs_size(); ++i) {
      EXPECT_EQ(after.cidrs(i).cidr(), before.cidrs(i).cidr());
      EXPECT_EQ(after.cidrs(i).action(), before.cidrs(i).action());
      EXPECT_EQ(after.cidrs(i).has_expires_at(), before.cidrs(i).has_expires_at());
      EXPECT_NEAR(double(after.cidrs(i).expires_at().seconds()),
                  double(before.cidrs(i).expires_at().seconds()), 2.0)
          << after.cidrs(i).cidr();
    }
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(ctl({"mode", id, "block_all"}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);

  const nlohmann::json list = ctl_json({"list"});
  ASSERT_EQ(list["attachments"].size(), 1U);
  EXPECT_EQ(list["attachments"][0]["id"], id);
  EXPECT_NE(ctl({"list"}).output.find(cgroup_->path()), std::string::npos);

  EXPECT_EQ(ctl({"detach", id}).exit_code, 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
}

TEST_F(CtlE2eTest, AttachedInterfaceFiltersTheGuest) {
  topo_->start_host_server();
  start_daemon();
  const nlohmann::json att = ctl_json({"attach", "--interface", topo_->host_if(), "--mode",
                                       "allowlist", "--allow-cidr", "198.51.100.1"});
  ASSERT_TRUE(att.is_object());
  EXPECT_EQ(att["type"], "TARGET_TYPE_INTERFACE");
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(
      topo_->run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); }),
      ETIMEDOUT);
  EXPECT_EQ(ctl({"allow-cidr", att["id"], "203.0.113.0/24"}).exit_code, 0);
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort); }), 0);
}

// The count of one hook and reason in `counters -o json` output (0 if
// absent; uint64 values are JSON strings).
uint64_t counter_of(const nlohmann::json& counters, const std::string& hook,
                    const std::string& reason) {
  for (const auto& c : counters.value("counters", nlohmann::json::array())) {
    if (c.value("hook", "") == hook && c.value("reason", "") == reason) {
      return std::stoull(c.value("count", "0"));
    }
  }
  return 0;
}

TEST_F(CtlE2eTest, CountersSayWhatWasRefusedAndWhy) {
  topo_->start_peer_server();
  start_daemon();
  const nlohmann::json att = ctl_json({"attach", "--cgroup", cgroup_->path(), "--mode", "allowlist",
                                       "--allow-cidr", "198.51.100.2"});
  const std::string id = att.value("id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(ctl_json({"counters", id}).contains("denied")) << "nothing denied yet";

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  const nlohmann::json c = ctl_json({"counters", id});
  EXPECT_EQ(counter_of(c, "socket", "deny_default"), 3U) << c.dump();
  EXPECT_EQ(c.value("denied", ""), "3") << c.dump();
  EXPECT_GE(counter_of(c, "socket", "allow_rule"), 1U) << "the allowed connect()";
  EXPECT_GE(counter_of(c, "packet", "allow_rule"), 1U) << "and its packets";

  const CommandResult table = ctl({"counters", id});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.output.find("denied:   3"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("socket  deny_default"), std::string::npos) << table.output;

  daemon_->kill9();
  start_daemon();
  EXPECT_EQ(counter_of(ctl_json({"counters", id}), "socket", "deny_default"), 3U)
      << "the counts live in the kernel: a restart keeps them";
}

TEST_F(CtlE2eTest, ExitStatusesTellFailuresApart) {
  start_daemon();
  const nlohmann::json att = ctl_json({"attach", "--cgroup", cgroup_->path()});
  const std::string id = att.value("id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(att["applied_policy"], "builtin-default");

  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string said;
  };
  const std::vector<Case> cases = {
      {{"get", "att-999"}, 5, "NOT_FOUND"},
      {{"counters", "att-999"}, 5, "NOT_FOUND"},
      {{"counters", "nine"}, 6, "id"},
      {{"remove-cidr", id, "203.0.113.9"}, 5, "NOT_FOUND"},
      {{"attach", "--cgroup", cgroup_->path()}, 7, id},
      {{"allow-cidr", id, "198.51.100.1/24"}, 6, "did you mean \"198.51.100.0/24\""},
      {{"allow-domain", id, "bad..name"}, 6, "rule.domain"},
      {{"allow-domain", id, "-bad.example"}, 2, "put \"--\" before a value"},
      {{"allow-domain", id, "--", "-bad.example"}, 6, "starts or ends with '-'"},
      {{"attach", "--interface", "sebpf-none0"}, 5, "sebpf-none0"},
      {{"mode", id, "strict"}, 2, "one of disabled, allowlist"},
      {{"allow-cidr", id, "198.51.100.7", "--ttl", "5 minutes"}, 2, "--ttl"},
      {{"attach", "--cgroup", cgroup_->path(), "--pid", "1"}, 2, "Exactly 1 option"},
      {{"attach", "--cgroup", cgroup_->path(), "--allow-cidr", "198.51.100.7"}, 2, "--mode"},
      {{"replace-policy", id, "--file", "/nonexistent/p.json"}, 2, "/nonexistent/p.json"},
      {{"frobnicate"}, 2, "frobnicate"},
      {{"list", "--socket", dir() + "/no.sock"}, 3, "no superebpfd answers"},
  };
  for (const Case& c : cases) {
    const CommandResult r = ctl(c.args);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.exit_code, c.exit_code) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(c.said), std::string::npos) << cmd << "\n" << r.output;
  }
  EXPECT_EQ(ctl({"--help"}).exit_code, 0);
  EXPECT_EQ(ctl({"allow-cidr", "--help"}).exit_code, 0);
}

// A reload (SIGHUP) hands the API socket to the new process, but a call
// that reaches the old one as its server shuts down is CANCELLED there
// before it runs (grpc/grpc#41785): the CLI calls again, so a script
// calling through reloads sees every call done.
// A List of many attachments with much metadata is larger than the 4 MiB
// a gRPC client reads by default; the CLI reads it whole all the same.
TEST_F(CtlE2eTest, AListLargerThanGrpcsDefaultMessageIsRead) {
  start_daemon();
  std::vector<std::unique_ptr<TestCgroup>> cgroups;
  constexpr int kAttachments = 64;  // 64 entries of about 1 KiB each: 4.3 MiB in all
  for (int i = 0; i < kAttachments; ++i) {
    cgroups.push_back(
        std::make_unique<TestCgroup>("sebpf-list-" + topo_->tag() + "-" + std::to_string(i)));
    v1::AttachRequest req;
    req.set_cgroup_path(cgroups.back()->path());
    for (int key = 0; key < 64; ++key) {
      (*req.mutable_metadata())["key" + std::to_string(key)] = std::string(1024, 'v');
    }
    v1::Attachment att;
    ASSERT_TRUE(attach(req, &att).ok());
  }
  const CommandResult listed = ctl({"list", "-o", "json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output.substr(0, 500);
  EXPECT_GT(listed.output.size(), size_t{4} << 20);
  const auto json = nlohmann::json::parse(listed.output, nullptr, false);
  EXPECT_EQ(json["attachments"].size(), size_t{kAttachments});
}

TEST_F(CtlE2eTest, CallsThroughReloadsAreAllDone) {
  start_daemon();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> failures;
  int calls = 0;
  const auto call_until_stopped = [&] {
    while (!stop) {
      const CommandResult r = ctl({"list"});
      std::lock_guard lock(mu);
      ++calls;
      if (r.exit_code != 0) failures.push_back(std::to_string(r.exit_code) + " " + r.output);
    }
  };
  std::thread first(call_until_stopped);
  std::thread second(call_until_stopped);
  bool reloaded = true;
  for (size_t ready = 2; ready <= 41 && reloaded; ++ready) {
    reloaded = kill(daemon_->pid(), SIGHUP) == 0 &&
               daemon_->wait_for_log("\"event\":\"ready\"", ready, std::chrono::seconds(15));
  }
  stop = true;
  first.join();
  second.join();
  ASSERT_TRUE(reloaded) << daemon_->log();
  EXPECT_GT(calls, 20);
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << calls
                                << " calls failed, the first: " << failures.front();
}

// Runs superebpfctl as uid/gid nobody, with no supplementary groups.
CommandResult ctl_as_nobody(const std::string& socket) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(120);
    execl(SEBPF_CTL_PATH, SEBPF_CTL_PATH, "--socket", socket.c_str(), "list",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipefd[1]);
  CommandResult result;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) result.output.append(buf, size_t(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST_F(CtlE2eTest, ACallerWhoseUidIsNotAllowedIsRefused) {
  // The socket's group lets nobody open it; only the peer check stands.
  start_daemon({"--socket-group", std::to_string(kNobody)});
  const CommandResult refused = ctl_as_nobody(daemon_->socket());
  EXPECT_EQ(refused.exit_code, 4) << refused.output;
  EXPECT_NE(refused.output.find("PEER_NOT_ALLOWED"), std::string::npos) << refused.output;
  EXPECT_NE(daemon_->log().find("api_peer_refused"), std::string::npos);

  start_daemon({"--socket-group", std::to_string(kNobody), "--allow-uid", std::to_string(kNobody)});
  const CommandResult allowed = ctl_as_nobody(daemon_->socket());
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
}

}  // namespace
}  // namespace sebpf::testing
