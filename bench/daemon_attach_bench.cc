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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "support/cgroup.h"
#include "support/daemon_process.h"
#include "support/process.h"

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

// Attaches every target, then detaches them all; prints one block.
void run(const char* kind, DaemonProcess& daemon, v1::DaemonService::Stub& stub,
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
      std::exit(1);
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
    if (!stub.Detach(&ctx, req, &resp).ok()) std::exit(1);
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
  char tmpl[] = "/tmp/sebpf-attach-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  const std::string pin_dir = "/sys/fs/bpf/sebpf-attach-bench";
  const std::string root = cgroup2_root() + "/sebpf-attach-bench";
  int rc = 0;
  mkdir(root.c_str(), 0755);
  std::vector<std::string> cgroups;
  for (int i = 0; i < count; ++i) {
    cgroups.push_back(root + "/c" + std::to_string(i));
    mkdir(cgroups.back().c_str(), 0755);
  }
  {
    // A restart of a loaded host: every cgroup attached, a clean stop
    // (enforcement stays), and a start that adopts them all, timed from
    // the start until the API answers.
    std::optional<double> ready_ms;
    {
      DaemonProcess before(argv[1], dir, pin_dir, {"--log-level", "warning"});
      auto stub = before.wait_ready();
      if (!stub) {
        std::fprintf(stderr, "superebpfd did not start:\n%s", before.log().c_str());
        return 1;
      }
      if (!attach_all(*stub, cgroups, true)) rc = 1;
      if (before.terminate() != 0) rc = 1;
    }
    const auto start = Clock::now();
    DaemonProcess after(argv[1], dir, pin_dir, {"--detach-on-exit", "--log-level", "warning"});
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
  std::filesystem::remove_all(pin_dir);
  {
    DaemonProcess daemon(argv[1], dir, pin_dir, {"--detach-on-exit", "--log-level", "warning"});
    auto stub = daemon.wait_ready();
    if (!stub) {
      std::fprintf(stderr, "superebpfd did not start:\n%s", daemon.log().c_str());
      return 1;
    }

    run("cgroups", daemon, *stub, cgroups, true);

    // Veth pairs made in one `ip -batch`: creating 2,048 interfaces one
    // command at a time would take longer than everything measured.
    std::ofstream batch(dir + "/add.batch");
    std::ofstream del(dir + "/del.batch");
    std::vector<std::string> veths;
    for (int i = 0; i < count; ++i) {
      veths.push_back("sebpfb" + std::to_string(i));
      batch << "link add " << veths.back() << " type veth peer name sebpfc" << i << "\n";
      del << "link del " << veths.back() << "\n";
    }
    batch.close();
    del.close();
    must_run({"ip", "-batch", dir + "/add.batch"});
    run("veths", daemon, *stub, veths, false);

    // The watcher: attach all again, delete all interfaces, and time until
    // the daemon has detached every one.
    if (!attach_all(*stub, veths, false)) rc = 1;
    const auto start = Clock::now();
    must_run({"ip", "-batch", dir + "/del.batch"});
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
    if (!domain_rules_at_the_cap(daemon, *stub, cgroups.front(), dir + "/state/state.pb")) rc = 1;
    for (const auto& c : cgroups) rmdir(c.c_str());
    rmdir(root.c_str());
  }
  std::filesystem::remove_all(dir);
  return rc;
}
