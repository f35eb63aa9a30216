// superebpfctl: every superebpfd API method as a subcommand. docs/cli.md is
// its manual; exit statuses are in exit_codes.h.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "ctl/commands.h"
#include "ctl/exit_codes.h"

namespace {

using namespace sebpf::ctl;

struct Options {
  std::string socket = kDefaultSocket;
  std::string output = "table";
  std::string id, value, action, ttl, file;
  AttachArgs attach;
};

// A subcommand taking an attachment id first.
CLI::App* with_id(CLI::App& app, const char* name, const char* help, Options& o) {
  CLI::App* sub = app.add_subcommand(name, help);
  sub->add_option("ID", o.id, "attachment id (att-N)")->required();
  return sub;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"superebpfctl: manage superebpfd's attachments and their egress policies"};
  // Subcommands are checked after parsing, so a mistyped one is named.
  app.require_subcommand(0, 1);
  app.fallthrough();
  app.add_option("--socket", o.socket, "the daemon's API socket")
      ->envname("SUPEREBPF_SOCKET")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  app.add_option("-o,--output", o.output, "table (for people) or json (the API's messages)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  std::function<int(Context&)> run;

  CLI::App* attach = app.add_subcommand("attach", "start enforcing on a cgroup or an interface");
  auto* target = attach->add_option_group("target", "exactly one of");
  target->add_option("--cgroup", o.attach.cgroup,
                     "cgroup v2 directory (absolute or mount-relative)");
  target->add_option("--interface", o.attach.interface_name, "host side of a VM's tap or veth");
  target->add_option("--pid", o.attach.pid, "the cgroup v2 directory this process is in");
  target->require_option(1);
  attach->add_option("--meta", o.attach.metadata, "KEY=VALUE kept with the attachment (repeat)");
  attach->add_option("--mode", o.attach.mode,
                     "initial policy mode: disabled, allowlist, denylist, block_all "
                     "(without --mode or --policy-file the daemon's policy file decides)");
  attach->add_option("--dns-mode", o.attach.dns_mode, "initial DNS mode (default: --mode)");
  attach->add_option("--allow-cidr", o.attach.allow_cidrs, "initial allow rule (repeat)");
  attach->add_option("--deny-cidr", o.attach.deny_cidrs, "initial deny rule (repeat)");
  attach->add_option("--allow-domain", o.attach.allow_domains, "initial allowed domain (repeat)");
  attach->add_option("--deny-domain", o.attach.deny_domains, "initial denied domain (repeat)");
  attach->add_option("--policy-file", o.attach.policy_file,
                     "initial policy as JSON, as `policy ID -o json` prints it ('-': stdin)");
  attach->callback([&] { run = [&](Context& c) { return cmd_attach(c, o.attach); }; });

  with_id(app, "detach", "stop enforcing and forget the attachment", o)->callback([&] {
    run = [&](Context& c) { return cmd_detach(c, o.id); };
  });
  app.add_subcommand("list", "all attachments")->callback([&] {
    run = [&](Context& c) { return cmd_list(c); };
  });
  with_id(app, "get", "one attachment", o)->callback([&] {
    run = [&](Context& c) { return cmd_get(c, o.id); };
  });
  with_id(app, "policy", "the policy in force", o)->callback([&] {
    run = [&](Context& c) { return cmd_policy(c, o.id); };
  });
  with_id(app, "counters", "what the filter allowed and denied, by reason", o)->callback([&] {
    run = [&](Context& c) { return cmd_counters(c, o.id); };
  });

  for (const bool dns : {false, true}) {
    CLI::App* sub = with_id(app, dns ? "dns-mode" : "mode",
                            dns ? "set the DNS mode" : "set the policy mode", o);
    sub->add_option("MODE", o.value, "disabled, allowlist, denylist or block_all")->required();
    sub->callback(
        [&, dns] { run = [&, dns](Context& c) { return cmd_mode(c, o.id, o.value, dns); }; });
  }

  for (const char* action : {"allow", "deny"}) {
    const std::string act = action;
    const bool allow = act == "allow";
    CLI::App* sub = with_id(
        app, (act + "-cidr").c_str(),
        allow ? "allow a CIDR or address (adds a rule)" : "deny a CIDR or address (adds a rule)",
        o);
    sub->add_option("CIDR", o.value, "198.51.100.0/24, 2001:db8::1, ...")->required();
    sub->add_option("--ttl", o.ttl, "expire after 90, 90s, 15m, 12h, 7d (default: never)");
    sub->callback([&, act] {
      run = [&, act](Context& c) { return cmd_add_cidr(c, o.id, o.value, act, o.ttl); };
    });

    CLI::App* dom = with_id(
        app, (act + "-domain").c_str(),
        allow ? "allow a domain and its subdomains" : "deny a domain and its subdomains", o);
    dom->add_option("DOMAIN", o.value, "example.org")->required();
    dom->callback(
        [&, act] { run = [&, act](Context& c) { return cmd_add_domain(c, o.id, o.value, act); }; });
  }

  CLI::App* rm_cidr = with_id(app, "remove-cidr", "remove a CIDR rule", o);
  rm_cidr->add_option("CIDR", o.value, "as it was added")->required();
  rm_cidr->add_option("--action", o.action, "allow or deny (default: both)");
  rm_cidr->callback(
      [&] { run = [&](Context& c) { return cmd_remove_cidr(c, o.id, o.value, o.action); }; });

  CLI::App* rm_dom = with_id(app, "remove-domain", "remove a domain rule", o);
  rm_dom->add_option("DOMAIN", o.value, "as it was added")->required();
  rm_dom->add_option("--action", o.action, "allow or deny (default: both)");
  rm_dom->callback(
      [&] { run = [&](Context& c) { return cmd_remove_domain(c, o.id, o.value, o.action); }; });

  CLI::App* replace =
      with_id(app, "replace-policy", "replace mode, DNS mode and all rules at once", o);
  replace
      ->add_option("--file", o.file,
                   "the policy as JSON, as `policy ID -o json` prints it ('-': stdin)")
      ->required();
  replace->callback([&] { run = [&](Context& c) { return cmd_replace_policy(c, o.id, o.file); }; });

  app.allow_extras();  // after the subcommands, which must not inherit it
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the mistake
    if (code == 0) return kExitOk;
    // CLI11 takes a value that begins with '-' for an option it does not
    // know, then says only that the value is missing ("DOMAIN is required").
    for (const std::string& arg : app.remaining()) {
      if (arg.size() > 1 && arg[0] == '-') {
        std::cerr << "superebpfctl: \"" << arg << "\" is not an option; put \"--\" before a "
                  << "value that begins with '-'\n";
        break;
      }
    }
    return kExitUsage;
  }
  if (!app.remaining().empty()) {
    std::string extra;
    for (const std::string& arg : app.remaining()) extra += " " + arg;
    std::cerr << "superebpfctl: " << (run ? "unexpected arguments:" : "unknown command:") << extra
              << "\nRun with --help for more information.\n";
    return kExitUsage;
  }
  if (!run) {
    std::cerr << app.help();
    return kExitUsage;
  }
  DaemonClient client(o.socket);
  Context ctx{client, o.output == "json" ? OutputFormat::kJson : OutputFormat::kTable};
  return run(ctx);
}
