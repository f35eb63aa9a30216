// The work of each superebpfctl subcommand once its command line is parsed:
// check the values, call the daemon, print. Each returns the exit status.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ctl/daemon_client.h"

namespace sebpf::ctl {

enum class OutputFormat { kTable, kJson };

struct Context {
  DaemonClient& client;
  OutputFormat format;
};

struct AttachArgs {
  std::string cgroup, interface_name;
  std::optional<uint32_t> pid;
  std::vector<std::string> metadata;  // KEY=VALUE
  std::string mode, dns_mode;         // empty: not given
  std::vector<std::string> allow_cidrs, deny_cidrs, allow_domains, deny_domains;
  std::string policy_file;  // JSON Policy; "-" for stdin
};

int cmd_attach(Context& ctx, const AttachArgs& args);
int cmd_detach(Context& ctx, const std::string& id);
int cmd_list(Context& ctx);
int cmd_get(Context& ctx, const std::string& id);
int cmd_policy(Context& ctx, const std::string& id);
int cmd_counters(Context& ctx, const std::string& id);
int cmd_mode(Context& ctx, const std::string& id, const std::string& mode, bool dns);
int cmd_add_cidr(Context& ctx, const std::string& id, const std::string& cidr,
                 const std::string& action, const std::string& ttl);
int cmd_remove_cidr(Context& ctx, const std::string& id, const std::string& cidr,
                    const std::string& action);
int cmd_add_domain(Context& ctx, const std::string& id, const std::string& domain,
                   const std::string& action);
int cmd_remove_domain(Context& ctx, const std::string& id, const std::string& domain,
                      const std::string& action);
int cmd_replace_policy(Context& ctx, const std::string& id, const std::string& file);

}  // namespace sebpf::ctl
