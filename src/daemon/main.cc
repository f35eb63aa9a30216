// superebpfd: the per-host daemon. Reads its configuration, opens (or
// adopts) the pinned datapath, reconciles it with the state file, watches
// targets, and serves DaemonService on a unix socket until SIGINT/SIGTERM.
// SIGHUP reloads: a fresh copy of the binary replaces this one in the same
// process, taking its DNS endpoints' sockets over (reexec.h).
#include <grpc/grpc.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>

#include "daemon/api_convert.h"
#include "daemon/api_listener.h"
#include "daemon/attachment_manager.h"
#include "daemon/daemon_config.h"
#include "daemon/daemon_service.h"
#include "daemon/dns_backend.h"
#include "daemon/fd_store.h"
#include "daemon/logger.h"
#include "daemon/reexec.h"
#include "daemon/socket_activation.h"
#include "daemon/target_watcher.h"
#include "daemon/trusted_paths.h"
#include "datapath/libbpf_log.h"
#include "datapath/system.h"
#include "policy/policy_file.h"

namespace sebpf::daemon {
namespace {

struct Flags {
  std::string config_file;
  std::optional<std::string> socket_path, socket_group, state_dir, pin_dir, policy_file, log_level;
  std::vector<uint32_t> allow_uids, allow_gids;
  std::vector<std::string> dns_upstreams;
  bool detach_on_exit = false;
  bool check_config = false;
};

Result<DaemonConfig> build_config(const Flags& flags) {
  DaemonConfig config;
  if (!flags.config_file.empty()) {
    SEBPF_RETURN_IF_ERROR(load_daemon_config(flags.config_file, config));
  }
  if (flags.socket_path) config.socket_path = *flags.socket_path;
  if (flags.socket_group) config.socket_group = *flags.socket_group;
  if (flags.state_dir) config.state_dir = *flags.state_dir;
  if (flags.pin_dir) config.datapath.pin_dir = *flags.pin_dir;
  if (flags.policy_file) config.policy_file = *flags.policy_file;
  if (flags.log_level) {
    SEBPF_ASSIGN_OR_RETURN(config.log_level, parse_log_level(*flags.log_level));
  }
  config.allowed_uids.insert(config.allowed_uids.end(), flags.allow_uids.begin(),
                             flags.allow_uids.end());
  config.allowed_gids.insert(config.allowed_gids.end(), flags.allow_gids.begin(),
                             flags.allow_gids.end());
  if (flags.detach_on_exit) config.detach_on_exit = true;
  if (!flags.dns_upstreams.empty()) {
    config.dns_upstreams.clear();
    for (const std::string& text : flags.dns_upstreams) {
      SEBPF_ASSIGN_OR_RETURN(auto upstream, net::SocketAddress::parse(text, 53));
      config.dns_upstreams.push_back(upstream);
    }
  }
  SEBPF_RETURN_IF_ERROR(validate_daemon_config(config));
  SEBPF_RETURN_IF_ERROR(check_trusted_paths(config, flags.config_file));
  return config;
}

Result<policy::PolicyFile> load_policies(const DaemonConfig& config) {
  if (config.policy_file.empty()) return policy::PolicyFile{};
  SEBPF_ASSIGN_OR_RETURN(auto policies, policy::load_policy_file(config.policy_file));
  if (auto fits = check_policy_file_bounds(policies, config.policy_limits()); !fits.ok()) {
    return fits.error().wrap(config.policy_file);
  }
  return policies;
}

// Every attachment holds descriptors (its DNS endpoint's sockets, its TCP
// clients, their queries' upstream connections), and the soft limit
// services start with (1024 under systemd) runs out at a few hundred
// attachments. Nothing here uses select(), so the hard limit is safe to
// take. Returns the limit in force.
rlim_t raise_open_files_limit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return 0;
  if (files.rlim_cur < files.rlim_max) {
    const rlim_t before = files.rlim_cur;
    files.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &files) != 0) return before;
  }
  return files.rlim_cur;
}

// Said at start rather than at the first attach it fails: without
// CAP_SYS_PTRACE the network namespace of another user's process, or of
// one holding capabilities the daemon lacks, cannot be opened
// (netns_of_cgroup), so whether a cgroup of such processes is in
// the host's namespace or a container's cannot be told, and its attach is
// refused (as under a service manager that leaves the capability out).
void warn_of_missing_capabilities(Logger& log) {
  const auto caps = datapath::capability_set("/proc/self/status", "CapEff");
  if (!caps.ok() || ((*caps >> CAP_SYS_PTRACE) & 1U) != 0) return;
  log.warning("capability_missing",
              {{"capability", "CAP_SYS_PTRACE"},
               {"impact",
                "a cgroup whose processes are another user's or hold capabilities the daemon "
                "lacks cannot be attached: their network namespace cannot be opened"}});
}

void notify_systemd(const std::string& state) {
  // Keeps NOTIFY_SOCKET set: STOPPING=1 uses it too.
  (void)sd_notify(0, state.c_str());
}

// Why a reload must not go ahead, if it must not: the process it starts
// would stop at once on a configuration, policy file or resolv.conf it
// refuses, and with it every DNS endpoint.
std::optional<Error> reload_refusal(const Flags& flags, const Result<std::string>& executable) {
  if (!executable.ok()) return executable.error();
  if (access(executable->c_str(), X_OK) != 0) {
    return Error::from_errno(errno, "the daemon's binary " + *executable);
  }
  auto config = build_config(flags);
  if (!config.ok()) return config.error();
  if (auto policies = load_policies(*config); !policies.ok()) return policies.error();
  if (auto dns = proxy_config(*config); !dns.ok()) return dns.error();
  return std::nullopt;
}

struct Invocation {
  const Flags& flags;
  char** argv;
  // What a reload runs (own_executable(), read at start).
  Result<std::string> executable;
  // What the process this one replaced handed over, or systemd passed.
  HandedOver handed_over;
  // Names systemd passed whose sockets its store may hold for nothing
  // (SystemdSockets::names_to_check).
  std::vector<std::string> stored_names_to_check;
};

// The signals serve() takes with sigtimedwait, never by a handler.
sigset_t handled_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  return signals;
}

int serve(const DaemonConfig& config, policy::PolicyFile policies, Logger& log,
          Invocation invocation) {
  const sigset_t signals = handled_signals();
  std::signal(SIGPIPE, SIG_IGN);
  const rlim_t open_files = raise_open_files_limit();

  auto fail = [&](const char* event, const Error& error) {
    log.error(event, {{"error", error.message()}});
    return 1;
  };
  auto mount = datapath::find_cgroup2_mount();
  if (!mount.ok()) return fail("cgroup2_not_found", mount.error());
  warn_of_missing_capabilities(log);
  auto manager = AttachmentManager::open(config, std::move(policies), log);
  if (!manager.ok()) return fail("start_failed", manager.error());
  // From here a failure stops the manager as a signal would (enforcement
  // stays; what it read at start is written back for the next daemon).
  auto fail_started = [&](const char* event, const Error& error) {
    const int code = fail(event, error);
    if (auto stopped = (*manager)->shutdown(/*detach_all=*/false); !stopped.ok()) {
      fail("stop_failed", stopped.error());
    }
    return code;
  };
  auto dns_config = proxy_config(config);
  if (!dns_config.ok()) return fail_started("dns_config_failed", dns_config.error());
  FdStore fd_store(log);
  DnsBackend dns_backend(**manager, fd_store, log);
  std::unique_ptr<dns::InheritedSockets>& inherited = invocation.handed_over.dns;
  const size_t handed_over = inherited ? inherited->size() : 0;
  auto dns_proxy = dns::DnsProxy::start(*dns_config, dns_backend, std::move(inherited));
  if (!dns_proxy.ok()) return fail_started("dns_failed", dns_proxy.error());
  (*manager)->set_dns_proxy(dns_proxy->get());
  if (handed_over > 0) {
    // The attachments of the process before are all adopted: a socket none
    // took is of one gone meanwhile.
    const size_t unclaimed = (*dns_proxy)->close_unclaimed_sockets();
    log.info("dns_sockets_taken_over",
             {{"sockets", std::to_string(handed_over - unclaimed)},
              {"unclaimed", std::to_string(unclaimed)},
              {"from", invocation.stored_names_to_check.empty() ? "reload" : "systemd"}});
  }
  // Every endpoint there is has put its sockets in the store by now.
  fd_store.forget_all_but_put(invocation.stored_names_to_check);
  std::string upstreams;
  for (const auto& u : dns_config->upstreams)
    upstreams += (upstreams.empty() ? "" : ",") + u.to_string();
  log.info("dns_ready",
           {{"upstreams", upstreams}, {"threads", std::to_string(dns_config->threads)}});
  auto watcher = TargetWatcher::start(**manager, log);
  if (!watcher.ok()) {
    (*manager)->set_dns_proxy(nullptr);
    return fail_started("watcher_failed", watcher.error());
  }
  (*manager)->set_cgroup_attached_hook(
      [w = watcher->get()](const std::string& path, uint64_t cgroup_id) {
        w->watch_cgroup(path, cgroup_id);
      });
  DaemonServiceImpl service(**manager, *mount, log);
  ListenerOptions listener_options{
      config.socket_path, config.socket_group, {config.allowed_uids, config.allowed_gids}};
  auto listener = ApiListener::start(listener_options, &service, log,
                                     std::move(invocation.handed_over.api_listener));
  if (!listener.ok()) {
    watcher->reset();
    (*manager)->set_dns_proxy(nullptr);
    return fail_started("api_failed", listener.error());
  }
  (*listener)->keep_in(fd_store);
  (*manager)->report_unsafe_targets(*mount);
  const size_t attachments = (*manager)->list().size();
  log.info("ready", {{"attachments", std::to_string(attachments)},
                     {"open_files_limit", std::to_string(open_files)}});
  // Under systemd (Type=notify), units ordered after ours (a container
  // runtime that attaches each container) start only now that the API
  // answers and every attachment is adopted. Without NOTIFY_SOCKET: nothing.
  notify_systemd("READY=1\nSTATUS=enforcing, " + std::to_string(attachments) + " attachments");

  const timespec sweep_every{static_cast<time_t>(config.sweep_interval.count()), 0};
  bool reload = false;
  while (true) {
    const int sig = sigtimedwait(&signals, nullptr, &sweep_every);
    if (sig == SIGINT || sig == SIGTERM) {
      log.info("signal", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      notify_systemd("STOPPING=1");
      break;
    }
    if (sig == SIGHUP) {
      if (auto refused = reload_refusal(invocation.flags, invocation.executable)) {
        log.error("reload_refused", {{"error", refused->message()},
                                     {"impact", "this process goes on serving as it was"}});
        continue;
      }
      log.info("signal", {{"signal", "SIGHUP"}, {"action", "reload"}});
      notify_systemd("RELOADING=1");
      reload = true;
      break;
    }
    (*manager)->sweep();
    (*manager)->restore_all_pins();
    (*manager)->report_daemon_cgroup(*mount);
    (*manager)->follow_all_workload_netns();
  }
  // What cannot be handed over is made anew by the next process, after a
  // gap: worth a warning, not worth refusing the reload.
  HandOver hand_over;
  if (reload) {
    if (auto api = (*listener)->hand_over(); api.ok()) {
      hand_over.api_listener = std::move(*api);
    } else {
      log.warning("api_socket_not_handed_over",
                  {{"error", api.error().message()},
                   {"impact", "API calls fail until the new process listens"}});
    }
  }
  (*listener)->stop();
  watcher->reset();
  // Nothing opens or closes an endpoint from here: the set handed over is
  // the set the state file holds.
  if (reload) {
    if (auto copies = (*dns_proxy)->duplicate_endpoint_sockets(); copies.ok()) {
      hand_over.dns_sockets = std::move(*copies);
    } else {
      log.warning(
          "dns_sockets_not_handed_over",
          {{"error", copies.error().message()},
           {"impact", "DNS goes unanswered until the new process has bound its endpoints"}});
    }
  }
  // Queries taken in are answered (and their addresses learned) before
  // the endpoints close or change hands.
  if (!(*dns_proxy)->drain()) {
    log.warning("dns_queries_dropped", {{"reason", "their upstreams did not answer in time"}});
  }
  (*manager)->set_dns_proxy(nullptr);
  dns_proxy->reset();
  // A reload keeps everything in the kernel, whatever detach_on_exit says.
  if (auto stopped = (*manager)->shutdown(!reload && config.detach_on_exit); !stopped.ok()) {
    return fail("stop_failed", stopped.error());
  }
  if (!reload) return 0;
  log.info("reexec", {{"binary", *invocation.executable},
                      {"dns_sockets", std::to_string(hand_over.dns_sockets.size())}});
  const Error failed = reexec(*invocation.executable, invocation.argv, std::move(hand_over));
  // Enforcement stays; systemd's Restart=on-failure starts a new process.
  return fail("reexec_failed", failed);
}

}  // namespace
}  // namespace sebpf::daemon

int main(int argc, char** argv) {
  using namespace sebpf::daemon;
  // Blocked before any thread starts, so that every thread inherits the
  // mask, and from the first instant: a SIGHUP's default action would end
  // the daemon (and systemd counts that a clean exit, not restarted); one
  // that comes while it starts is taken as a reload once it serves.
  const sigset_t signals = handled_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // What the daemon makes (the state, socket and pin directories) is
  // writable by root alone, whatever umask it was started with: the
  // checks of trusted_paths.h hold for what it makes too.
  umask(022);
  // A reply too large for the socket at once (a policy of thousands of
  // rules) starts gRPC's backup poller, a thread that polls for up to
  // 10 s; the library's last shutdown, in the API servers' destructors at a
  // stop, joins it, and so held every stop (and a restart's gap in DNS) for
  // up to 10 s. One reference held for the process's life leaves that
  // thread to the exit instead.
  grpc_init();
  Flags flags;
  CLI::App app{
      "superebpfd: per-attachment egress policy for VMs and containers, enforced with eBPF.\n"
      "Flags override the configuration file (docs/configuration.md)."};
  // A flag given twice: the last one counts, as a later flag overrides.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("-c,--config", flags.config_file, "YAML configuration file")
      ->check(CLI::ExistingFile);
  app.add_option("--socket", flags.socket_path, "API unix socket path");
  app.add_option("--socket-group", flags.socket_group, "group owning the API socket (mode 0660)");
  app.add_option("--allow-uid", flags.allow_uids, "a uid allowed to call the API (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--allow-gid", flags.allow_gids, "a gid allowed to call the API (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--state-dir", flags.state_dir, "where the state file is kept");
  app.add_option("--pin-dir", flags.pin_dir, "bpffs directory for pinned maps and links");
  app.add_option("--policy-file", flags.policy_file,
                 "local policy file: metadata selectors -> policy for new attachments");
  app.add_option("--log-level", flags.log_level, "debug, info, warning or error");
  app.add_option("--dns-upstream", flags.dns_upstreams,
                 "a resolver for allowed queries, ADDR or ADDR:PORT ([ADDR]:PORT for IPv6); "
                 "repeatable, asked in order; replaces dns.upstreams")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--detach-on-exit", flags.detach_on_exit,
               "detach everything on a clean stop (default: enforcement stays)");
  app.add_flag("--check-config", flags.check_config,
               "check the configuration and the policy file, then exit");
  CLI11_PARSE(app, argc, argv);

  auto config = build_config(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "superebpfd: %s\n", config.error().message().c_str());
    return 2;
  }
  auto policies = load_policies(*config);
  if (!policies.ok()) {
    std::fprintf(stderr, "superebpfd: %s\n", policies.error().message().c_str());
    return 2;
  }
  if (flags.check_config) {
    std::printf("configuration and policy file are valid (%zu policies)\n",
                policies->policies.size());
    return 0;
  }
  Logger log(config->log_level);
  // Every line the daemon writes is one JSON object, libbpf's too.
  const sebpf::datapath::LibbpfLogSink libbpf_log([&log](bool warning, std::string_view message) {
    log.log(warning ? LogLevel::kWarning : LogLevel::kInfo, "libbpf",
            {{"message", std::string(message)}});
  });
  if (auto made = make_trusted_directories(*config); !made.ok()) {
    log.error("start_failed", {{"error", made.error().message()}});
    return 1;
  }
  std::vector<std::string> problems;
  HandedOver handed_over = take_handed_over(problems);
  for (const std::string& why : problems) {
    log.warning("handed_over_socket_rejected", {{"detail", why}});
  }
  problems.clear();
  // Only a first start has systemd's sockets to take: a reload's process
  // gets them handed over (the API's marked as systemd's).
  SystemdSockets systemd = take_systemd_sockets(config->socket_path, problems);
  if (systemd.api_listener && !handed_over.api_listener.fd) {
    handed_over.api_listener = {std::move(systemd.api_listener), /*from_systemd=*/true};
  }
  if (!systemd.dns.empty() && !handed_over.dns) {
    handed_over.dns =
        std::make_unique<sebpf::dns::InheritedSockets>(std::move(systemd.dns), problems);
  }
  for (const std::string& why : problems) {
    log.warning("systemd_socket_rejected", {{"detail", why}});
  }
  return serve(*config, std::move(*policies), log,
               Invocation{flags, argv, own_executable(), std::move(handed_over),
                          std::move(systemd.names_to_check)});
}
