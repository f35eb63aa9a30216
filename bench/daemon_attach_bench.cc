// Daemon attach benchmark: how long a restart of a daemon holding 1,024
// cgroups takes to serve again; then attach and detach 1,024 cgroups and
// 1,024 veth interfaces through superebpfd's API, one call at a time as an
// orchestrator would. Prints the time per attach and detach, the daemon's
// RSS per attachment and the file descriptors it holds, the kernel memory
// of the datapath's maps per attachment, and how long the watcher takes to
// notice 1,024 deleted interfaces. The veths run second, in the slots the
// cgroups left, whose connection-tracking tables are kept for them. Last,
// what a policy change costs an attachment holding as many domain rules as
// dns.max_domain_rules allows by default.
//
// Needs root. Usage: sebpf_daemon_attach_bench PATH_TO_SUPEREBPFD [COUNT]
// Results: docs/benchmarks.md.
#include <bpf/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "support/cgroup.h"
#include "support/daemon_process.h"
#include "support/process.h"
#include "support/test_dir.h"

namespace {

using namespace sebpf::testing;
using Clock = std::chrono::steady_clock;

struct ProcessUse {
  long rss_kib = 0;
  size_t fds = 0;
};

ProcessUse use_of(pid_t pid) {
  ProcessUse use;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) use.rss_kib = std::stol(line.substr(6));
  }
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++use.fds;
  }
  return use;
}

// The kernel memory of every map whose name starts with "sebpf_" (the
// datapath's, and the tables it makes per attachment), as the kernel
// accounts it (fdinfo's memlock).
long long datapath_map_bytes() {
  long long total = 0;
  __u32 id = 0;
  while (bpf_map_get_next_id(id, &id) == 0) {
    sebpf::UniqueFd fd(bpf_map_get_fd_by_id(id));
    if (!fd) continue;
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    if (std::string(info.name).rfind("sebpf_", 0) != 0) continue;
    std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(fd.get()));
    std::string line;
    while (std::getline(fdinfo, line)) {
      if (line.rfind("memlock:", 0) == 0) total += std::stoll(line.substr(8));
    }
  }
  return total;
}

// The pin directory, removed however the bench ends: a daemon stopped
// without --detach-on-exit leaves its links (and with them the cgroups'
// programs) pinned there.
class PinDir {
 public:
  explicit PinDir(std::string path) : path_(std::move(path)) { remove(); }
  PinDir(const PinDir&) = delete;
  PinDir& operator=(const PinDir&) = delete;
  ~PinDir() { remove(); }

  const std::string& path() const { return path_; }
  void remove() {
    std::error_code ignored;  // a destructor must not throw
    std::filesystem::remove_all(path_, ignored);
  }

 private:
  std::string path_;
};

// COUNT veth pairs, made and deleted in one `ip -batch` each: creating
// 2,048 interfaces one command at a time would take longer than everything
// measured. Whatever is left is deleted on destruction.
class VethPairs {
 public:
  VethPairs(const std::string& dir, int count)
      : add_(dir + "/add.batch"), delete_(dir + "/del.batch") {
    std::ofstream add(add_);
    std::ofstream del(delete_);
    for (int i = 0; i < count; ++i) {
      names_.push_back("sebpfb" + std::to_string(i));
      add << "link add " << names_.back() << " type veth peer name sebpfc" << i << "\n";
      del << "link del " << names_.back() << "\n";
    }
  }
  VethPairs(const VethPairs&) = delete;
  VethPairs& operator=(const VethPairs&) = delete;
  // -force: on past the ones already deleted.
  ~VethPairs() { run_command({"ip", "-force", "-batch", delete_}); }

  const std::vector<std::string>& names() const { return names_; }
  bool create() const { return run_command({"ip", "-batch", add_}).exit_code == 0; }
  bool delete_all() const { return run_command({"ip", "-batch", delete_}).exit_code == 0; }

 private:
  std::string add_;
  std::string delete_;
  std::vector<std::string> names_;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Percentiles {
  double p50, p99, max;
};

Percentiles percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[v.size() * 99 / 100], v.back()};
}

// An Attach of a cgroup by path, or else of an interface by name.
v1::AttachRequest attach_request(const std::string& target, bool cgroup) {
  v1::AttachRequest req;
  if (cgroup) {
    req.set_cgroup_path(target);
  } else {
    req.set_interface_name(target);
  }
  return req;
}

// Attaches every target, one call each; false if any failed.
bool attach_all(v1::DaemonService::Stub& stub, const std::vector<std::string>& targets,
                bool cgroups) {
  bool all = true;
  for (const std::string& target : targets) {
    const v1::AttachRequest req = attach_request(target, cgroups);
    v1::Attachment att;
    grpc::ClientContext ctx;
    all = stub.Attach(&ctx, req, &att).ok() && all;
  }
  return all;
}

// Attaches every target, then detaches them all; prints one block. False
// (and nothing printed) if a call failed.
bool run(const char* kind, DaemonProcess& daemon, v1::DaemonService::Stub& stub,
         const std::vector<std::string>& targets, bool cgroups) {
  const ProcessUse before = use_of(daemon.pid());
  const long long kernel_before = datapath_map_bytes();
  std::vector<std::string> ids;
  std::vector<double> attach_ms;
  const auto start = Clock::now();
  for (const std::string& target : targets) {
    v1::AttachRequest req = attach_request(target, cgroups);
    (*req.mutable_metadata())["bench"] = "1";
    v1::Attachment att;
    grpc::ClientContext ctx;
    const auto t = Clock::now();
    const grpc::Status status = stub.Attach(&ctx, req, &att);
    attach_ms.push_back(ms_since(t));
    if (!status.ok()) {
      std::fprintf(stderr, "attach %s: %s\n", target.c_str(), status.error_message().c_str());
      return false;
    }
    ids.push_back(att.id());
  }
  const double attach_total = ms_since(start);
  const ProcessUse after = use_of(daemon.pid());
  const long long kernel_after = datapath_map_bytes();

  std::vector<double> detach_ms;
  const auto detach_start = Clock::now();
  for (const std::string& id : ids) {
    v1::DetachRequest req;
    req.set_id(id);
    v1::DetachResponse resp;
    grpc::ClientContext ctx;
    const auto t = Clock::now();
    const grpc::Status status = stub.Detach(&ctx, req, &resp);
    if (!status.ok()) {
      std::fprintf(stderr, "detach %s: %s\n", id.c_str(), status.error_message().c_str());
      return false;
    }
    detach_ms.push_back(ms_since(t));
  }
  const double detach_total = ms_since(detach_start);
  const auto a = percentiles(attach_ms);
  const auto d = percentiles(detach_ms);
  const double n = static_cast<double>(targets.size());
  std::printf("%-10s attach %zu: total %.0f ms, %.2f ms each (p50 %.2f, p99 %.2f, max %.2f)\n",
              kind, targets.size(), attach_total, attach_total / n, a.p50, a.p99, a.max);
  std::printf("%-10s detach %zu: total %.0f ms, %.2f ms each (p50 %.2f, p99 %.2f, max %.2f)\n",
              kind, targets.size(), detach_total, detach_total / n, d.p50, d.p99, d.max);
  std::printf("%-10s RSS %ld KiB -> %ld KiB: %.1f KiB per attachment; fds %zu -> %zu\n", kind,
              before.rss_kib, after.rss_kib,
              static_cast<double>(after.rss_kib - before.rss_kib) / n, before.fds, after.fds);
  std::printf("%-10s kernel maps %.1f MiB -> %.1f MiB: %.1f KiB per attachment\n", kind,
              static_cast<double>(kernel_before) / (1 << 20),
              static_cast<double>(kernel_after) / (1 << 20),
              static_cast<double>(kernel_after - kernel_before) / 1024 / n);
  return true;
}

// One attachment holding as many domain rules as dns.max_domain_rules
// allows at its default: what each policy change then costs (it writes the
// state file whole) and what the rules take in the daemon and the file.
bool domain_rules_at_the_cap(DaemonProcess& daemon, v1::DaemonService::Stub& stub,
                             const std::string& cgroup, const std::string& state_file) {
  constexpr int kCap = 16384;
  constexpr int kChanges = 200;
  const ProcessUse before = use_of(daemon.pid());
  v1::AttachRequest req = attach_request(cgroup, true);
  req.mutable_policy()->set_mode(v1::MODE_ALLOWLIST);
  req.mutable_policy()->set_dns_mode(v1::MODE_ALLOWLIST);
  for (int i = 0; i < kCap - 1; ++i) {
    v1::DomainRule* rule = req.mutable_policy()->add_domains();
    rule->set_domain("name" + std::to_string(i) + ".mirror.example");
    rule->set_action(v1::ACTION_ALLOW);
  }
  v1::Attachment att;
  const auto attach_start = Clock::now();
  grpc::ClientContext attach_ctx;
  if (!stub.Attach(&attach_ctx, req, &att).ok()) return false;
  const double attach_ms = ms_since(attach_start);
  const ProcessUse after = use_of(daemon.pid());
  const auto state_bytes = std::filesystem::file_size(state_file);

  // One rule added (the cap reached) and removed again, one call each.
  std::vector<double> change_ms;
  bool all = true;
  for (int i = 0; i < kChanges; ++i) {
    v1::AddDomainRequest add;
    add.set_id(att.id());
    add.mutable_rule()->set_domain("one-more.mirror.example");
    add.mutable_rule()->set_action(v1::ACTION_ALLOW);
    v1::RemoveDomainRequest remove;
    remove.set_id(att.id());
    remove.set_domain("one-more.mirror.example");
    v1::Policy out;
    grpc::ClientContext add_ctx, remove_ctx;
    auto t = Clock::now();
    all = stub.AddDomain(&add_ctx, add, &out).ok() && all;
    change_ms.push_back(ms_since(t));
    t = Clock::now();
    all = stub.RemoveDomain(&remove_ctx, remove, &out).ok() && all;
    change_ms.push_back(ms_since(t));
  }
  v1::DetachRequest detach;
  detach.set_id(att.id());
  v1::DetachResponse detached;
  grpc::ClientContext detach_ctx;
  all = stub.Detach(&detach_ctx, detach, &detached).ok() && all;
  const auto c = percentiles(change_ms);
  std::printf(
      "domains    1 attachment with %d domain rules: attach %.0f ms; one added or removed "
      "(p50 %.2f ms, p99 %.2f, max %.2f); state file %.0f KiB; RSS +%ld KiB\n",
      kCap - 1, attach_ms, c.p50, c.p99, c.max, static_cast<double>(state_bytes) / 1024,
      after.rss_kib - before.rss_kib);
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || geteuid() != 0) {
    std::fprintf(stderr, "usage (as root): %s PATH_TO_SUPEREBPFD [COUNT]\n", argv[0]);
    return 2;
  }
  const int count = argc > 2 ? std::atoi(argv[2]) : 1024;
  if (count < 1) {
    std::fprintf(stderr, "COUNT must be a positive number\n");
    return 2;
  }
  // Everything the bench makes is owned here and removed in reverse order
  // however it ends, an early return included: each daemon is stopped
  // first (its scope's end), then the cgroups, pins and files go.
  const TestDir dir("sebpf-attach-bench");
  if (!dir.made()) {
    std::perror("mkdtemp");
    return 1;
  }
  PinDir pins("/sys/fs/bpf/sebpf-attach-bench");
  const TestCgroup root("sebpf-attach-bench");
  std::vector<std::unique_ptr<TestCgroup>> cgroup_owners;
  std::vector<std::string> cgroups;
  for (int i = 0; i < count; ++i) {
    cgroup_owners.push_back(
        std::make_unique<TestCgroup>("sebpf-attach-bench/c" + std::to_string(i)));
    cgroups.push_back(cgroup_owners.back()->path());
  }
  int rc = 0;
  {
    // A restart of a loaded host: every cgroup attached, a clean stop
    // (enforcement stays), and a start that adopts them all, timed from
    // the start until the API answers.
    std::optional<double> ready_ms;
    {
      DaemonProcess before(argv[1], dir.path(), pins.path(), {"--log-level", "warning"});
      auto stub = before.wait_ready();
      if (!stub) {
        std::fprintf(stderr, "superebpfd did not start:\n%s", before.log().c_str());
        return 1;
      }
      if (!attach_all(*stub, cgroups, true)) rc = 1;
      if (before.terminate() != 0) rc = 1;
    }
    const auto start = Clock::now();
    DaemonProcess after(argv[1], dir.path(), pins.path(),
                        {"--detach-on-exit", "--log-level", "warning"});
    auto stub = after.wait_ready(std::chrono::seconds(60));
    if (stub) ready_ms = ms_since(start);
    v1::ListResponse list;
    grpc::ClientContext ctx;
    if (!stub || !stub->List(&ctx, v1::ListRequest(), &list).ok() ||
        list.attachments_size() != count) {
      rc = 1;
    }
    std::printf("restart    %d cgroups attached: the new daemon answers %.0f ms after its start\n",
                count, ready_ms.value_or(-1));
    // Taking it off the host: a stop that detaches everything (what a
    // service manager's stop timeout must allow for).
    const auto stop_start = Clock::now();
    if (stub && after.terminate() != 0) rc = 1;
    std::printf("stop       %d cgroups attached, --detach-on-exit: exits %.0f ms after SIGTERM\n",
                count, ms_since(stop_start));
  }
  // Should the second daemon not have come up, its pinned links (and with
  // them the cgroups' programs) go with the pins.
  pins.remove();
  {
    DaemonProcess daemon(argv[1], dir.path(), pins.path(),
                         {"--detach-on-exit", "--log-level", "warning"});
    auto stub = daemon.wait_ready();
    if (!stub) {
      std::fprintf(stderr, "superebpfd did not start:\n%s", daemon.log().c_str());
      return 1;
    }

    if (!run("cgroups", daemon, *stub, cgroups, true)) return 1;

    const VethPairs veths(dir.path(), count);
    if (!veths.create()) {
      std::fprintf(stderr, "could not create %d veth pairs\n", count);
      return 1;
    }
    if (!run("veths", daemon, *stub, veths.names(), false)) return 1;

    // The watcher: attach all again, delete all interfaces, and time until
    // the daemon has detached every one.
    if (!attach_all(*stub, veths.names(), false)) rc = 1;
    const auto start = Clock::now();
    if (!veths.delete_all()) rc = 1;
    const double deleting_ms = ms_since(start);
    while (true) {
      v1::ListResponse list;
      grpc::ClientContext ctx;
      if (stub->List(&ctx, v1::ListRequest(), &list).ok() && list.attachments_size() == 0) break;
      if (ms_since(start) > 60000) {
        rc = 1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::printf(
        "watcher    %d interfaces deleted (the kernel took %.0f ms) -> all detached %.0f ms "
        "after the first deletion\n",
        count, deleting_ms, ms_since(start));
    // Last: the memory it measures would blur the figures of what follows.
    if (!domain_rules_at_the_cap(daemon, *stub, cgroups.front(), dir.path() + "/state/state.pb")) {
      rc = 1;
    }
  }
  return rc;
}
