#include "ctl/commands.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "ctl/arguments.h"
#include "ctl/exit_codes.h"
#include "ctl/output.h"

namespace sebpf::ctl {
namespace {

using google::protobuf::util::TimeUtil;

// A mistake on the command line, found before calling the daemon.
int usage_error(const std::string& option, const Error& error) {
  std::cerr << "superebpfctl: " << option << ": " << error.message() << "\n";
  return kExitUsage;
}

int call_error(const Error& error) {
  std::cerr << "superebpfctl: " << error.message() << "\n";
  return exit_code_for(error.code());
}

int print_policy(Context& ctx, const Result<v1::Policy>& policy) {
  if (!policy.ok()) return call_error(policy.error());
  std::cout << (ctx.format == OutputFormat::kJson ? to_json(*policy) : policy_text(*policy));
  return kExitOk;
}

int print_attachment(Context& ctx, const Result<v1::Attachment>& attachment) {
  if (!attachment.ok()) return call_error(attachment.error());
  std::cout << (ctx.format == OutputFormat::kJson ? to_json(*attachment)
                                                  : attachment_text(*attachment));
  return kExitOk;
}

// An optional action option: empty means "both".
Result<v1::Action> optional_action(const std::string& text) {
  if (text.empty()) return v1::ACTION_UNSPECIFIED;
  return parse_action(text);
}

Result<v1::Policy> read_policy_json(const std::string& path) {
  std::stringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in) return Error::from_errno(errno, "open " + path);
    text << in.rdbuf();
  }
  v1::Policy policy;
  const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &policy);
  if (!status.ok()) {
    return Error(Errc::kInvalidArgument,
                 path +
                     " is not a policy in the API's JSON form (what `superebpfctl policy ID "
                     "-o json` prints): " +
                     std::string(status.message()));
  }
  // A printed policy carries expires_at; the API takes a TTL. Turn what is
  // left of each rule's life into its TTL so the printed form reads back.
  const int64_t now = TimeUtil::TimestampToSeconds(TimeUtil::GetCurrentTime());
  for (int i = 0; i < policy.cidrs_size(); ++i) {
    v1::CidrRule* rule = policy.mutable_cidrs(i);
    if (!rule->has_expires_at() || rule->ttl_seconds() != 0) continue;
    const int64_t left = rule->expires_at().seconds() - now;
    if (left <= 0) {
      return Error(Errc::kInvalidArgument, path + ": cidrs[" + std::to_string(i) + "] (" +
                                               rule->cidr() + ") expired at " +
                                               TimeUtil::ToString(rule->expires_at()));
    }
    rule->set_ttl_seconds(static_cast<uint64_t>(left));
    rule->clear_expires_at();
  }
  return policy;
}

// The initial policy given by attach's options, if any.
Result<std::optional<v1::Policy>> attach_policy(const AttachArgs& a) {
  const bool rules = !a.allow_cidrs.empty() || !a.deny_cidrs.empty() || !a.allow_domains.empty() ||
                     !a.deny_domains.empty();
  if (!a.policy_file.empty()) {
    if (rules || !a.mode.empty() || !a.dns_mode.empty()) {
      return Error(Errc::kInvalidArgument,
                   "--policy-file gives the whole policy; it cannot be combined with --mode, "
                   "--dns-mode or rule options");
    }
    SEBPF_ASSIGN_OR_RETURN(v1::Policy policy, read_policy_json(a.policy_file));
    return std::optional<v1::Policy>(std::move(policy));
  }
  if (a.mode.empty()) {
    if (rules || !a.dns_mode.empty()) {
      return Error(Errc::kInvalidArgument,
                   "--mode is needed with --dns-mode or rule options (they make a policy)");
    }
    return std::optional<v1::Policy>();
  }
  v1::Policy p;
  SEBPF_ASSIGN_OR_RETURN(v1::Mode mode, parse_mode(a.mode));
  p.set_mode(mode);
  if (a.dns_mode.empty()) {
    p.set_dns_mode(mode);
  } else {
    SEBPF_ASSIGN_OR_RETURN(v1::Mode dns_mode, parse_mode(a.dns_mode));
    p.set_dns_mode(dns_mode);
  }
  for (const auto& [list, action] :
       {std::pair{&a.allow_cidrs, v1::ACTION_ALLOW}, std::pair{&a.deny_cidrs, v1::ACTION_DENY}}) {
    for (const std::string& cidr : *list) {
      v1::CidrRule* r = p.add_cidrs();
      r->set_cidr(cidr);
      r->set_action(action);
    }
  }
  for (const auto& [list, action] : {std::pair{&a.allow_domains, v1::ACTION_ALLOW},
                                     std::pair{&a.deny_domains, v1::ACTION_DENY}}) {
    for (const std::string& domain : *list) {
      v1::DomainRule* r = p.add_domains();
      r->set_domain(domain);
      r->set_action(action);
    }
  }
  return std::optional<v1::Policy>(std::move(p));
}

}  // namespace

int cmd_attach(Context& ctx, const AttachArgs& args) {
  v1::AttachRequest req;
  if (!args.cgroup.empty()) req.set_cgroup_path(args.cgroup);
  if (!args.interface_name.empty()) req.set_interface_name(args.interface_name);
  if (args.pid) req.set_pid(*args.pid);
  for (const std::string& item : args.metadata) {
    auto kv = parse_metadata(item);
    if (!kv.ok()) return usage_error("--meta", kv.error());
    if (!req.mutable_metadata()->insert({kv->first, kv->second}).second) {
      return usage_error("--meta",
                         Error(Errc::kInvalidArgument, "key \"" + kv->first + "\" is given twice"));
    }
  }
  auto policy = attach_policy(args);
  if (!policy.ok()) return usage_error("attach", policy.error());
  if (*policy) *req.mutable_policy() = **policy;
  return print_attachment(ctx, ctx.client.attach(req));
}

int cmd_detach(Context& ctx, const std::string& id) {
  if (Status s = ctx.client.detach(id); !s.ok()) return call_error(s.error());
  std::cout << (ctx.format == OutputFormat::kJson ? "{\n \"id\": \"" + id + "\"\n}\n"
                                                  : "detached " + id + "\n");
  return kExitOk;
}

int cmd_list(Context& ctx) {
  auto list = ctx.client.list();
  if (!list.ok()) return call_error(list.error());
  std::cout << (ctx.format == OutputFormat::kJson ? to_json(*list) : attachments_table(*list));
  return kExitOk;
}

int cmd_get(Context& ctx, const std::string& id) {
  return print_attachment(ctx, ctx.client.get(id));
}

int cmd_policy(Context& ctx, const std::string& id) {
  return print_policy(ctx, ctx.client.get_policy(id));
}

int cmd_counters(Context& ctx, const std::string& id) {
  auto counters = ctx.client.get_counters(id);
  if (!counters.ok()) return call_error(counters.error());
  std::cout << (ctx.format == OutputFormat::kJson ? to_json(*counters) : counters_text(*counters));
  return kExitOk;
}

int cmd_mode(Context& ctx, const std::string& id, const std::string& mode, bool dns) {
  auto m = parse_mode(mode);
  if (!m.ok()) return usage_error("MODE", m.error());
  return print_policy(ctx, dns ? ctx.client.set_dns_mode(id, *m) : ctx.client.set_mode(id, *m));
}

int cmd_add_cidr(Context& ctx, const std::string& id, const std::string& cidr,
                 const std::string& action, const std::string& ttl) {
  v1::AddCidrRequest req;
  req.set_id(id);
  req.mutable_rule()->set_cidr(cidr);
  auto a = parse_action(action);
  if (!a.ok()) return usage_error("action", a.error());
  req.mutable_rule()->set_action(*a);
  if (!ttl.empty()) {
    auto seconds = parse_ttl(ttl);
    if (!seconds.ok()) return usage_error("--ttl", seconds.error());
    req.mutable_rule()->set_ttl_seconds(*seconds);
  }
  return print_policy(ctx, ctx.client.add_cidr(req));
}

int cmd_remove_cidr(Context& ctx, const std::string& id, const std::string& cidr,
                    const std::string& action) {
  v1::RemoveCidrRequest req;
  req.set_id(id);
  req.set_cidr(cidr);
  auto a = optional_action(action);
  if (!a.ok()) return usage_error("--action", a.error());
  req.set_action(*a);
  return print_policy(ctx, ctx.client.remove_cidr(req));
}

int cmd_add_domain(Context& ctx, const std::string& id, const std::string& domain,
                   const std::string& action) {
  v1::AddDomainRequest req;
  req.set_id(id);
  req.mutable_rule()->set_domain(domain);
  auto a = parse_action(action);
  if (!a.ok()) return usage_error("action", a.error());
  req.mutable_rule()->set_action(*a);
  return print_policy(ctx, ctx.client.add_domain(req));
}

int cmd_remove_domain(Context& ctx, const std::string& id, const std::string& domain,
                      const std::string& action) {
  v1::RemoveDomainRequest req;
  req.set_id(id);
  req.set_domain(domain);
  auto a = optional_action(action);
  if (!a.ok()) return usage_error("--action", a.error());
  req.set_action(*a);
  return print_policy(ctx, ctx.client.remove_domain(req));
}

int cmd_replace_policy(Context& ctx, const std::string& id, const std::string& file) {
  auto policy = read_policy_json(file);
  if (!policy.ok()) return usage_error("--file", policy.error());
  v1::ReplacePolicyRequest req;
  req.set_id(id);
  *req.mutable_policy() = std::move(*policy);
  return print_policy(ctx, ctx.client.replace_policy(req));
}

}  // namespace sebpf::ctl
