// superebpfd end to end, attach and policy: attach through the API (a
// cgroup by path or by a process in it) and see real traffic obey the
// policy; an attach that cannot be saved is undone whole; the daemon's own
// cgroup is refused; a policy file selects by metadata; domain and CIDR
// rules past their caps and policies past what a client can read are
// refused; bad input is refused naming the field.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "daemon_e2e_helpers.h"
#include "daemon_fixture.h"
#include "support/netns.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using std::chrono::milliseconds;

TEST_F(DaemonE2eTest, AttachedCgroupObeysThePolicySetThroughTheApi) {
  topo_->start_peer_server();
  start_daemon();
  const v1::Attachment att =
      attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}), {{"vm", "7"}});
  ASSERT_FALSE(att.id().empty());
  EXPECT_EQ(att.type(), v1::TARGET_TYPE_CGROUP);
  EXPECT_EQ(att.target(), cgroup_->path());
  EXPECT_EQ(att.metadata().at("vm"), "7");
  EXPECT_EQ(att.dns().ipv4(), "127.0.0.1");
  EXPECT_NE(att.dns().port(), 0U);
  EXPECT_EQ(att.applied_policy(), "request");

  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddCidrRequest req;
    req.set_id(att.id());
    req.mutable_rule()->set_cidr("198.51.100.3");
    req.mutable_rule()->set_action(v1::ACTION_ALLOW);
    req.mutable_rule()->set_ttl_seconds(600);
    v1::Policy policy;
    ASSERT_TRUE(stub_->AddCidr(&ctx, req, &policy).ok());
    ASSERT_EQ(policy.cidrs_size(), 2);
    EXPECT_EQ(policy.cidrs(1).cidr(), "198.51.100.3/32");
    EXPECT_TRUE(policy.cidrs(1).has_expires_at());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::SetModeRequest req;
    req.set_id(att.id());
    req.set_mode(v1::MODE_BLOCK_ALL);
    v1::Policy policy;
    ASSERT_TRUE(stub_->SetMode(&ctx, req, &policy).ok());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ReplacePolicyRequest req;
    req.set_id(att.id());
    *req.mutable_policy() = make_policy(v1::MODE_DENYLIST, {}, {"198.51.100.2/32"});
    auto* domain = req.mutable_policy()->add_domains();
    domain->set_domain("Mirror.Example.ORG.");
    domain->set_action(v1::ACTION_ALLOW);
    v1::Policy policy;
    ASSERT_TRUE(stub_->ReplacePolicy(&ctx, req, &policy).ok());
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
  const v1::Policy policy = get_policy(att.id());
  EXPECT_EQ(policy.mode(), v1::MODE_DENYLIST);
  ASSERT_EQ(policy.domains_size(), 1);
  EXPECT_EQ(policy.domains(0).domain(), "mirror.example.org");

  ASSERT_TRUE(detach(att.id()).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
}

// An attach whose record cannot be written is undone whole: the kernel
// attachment, the DNS endpoint (its port is free for the next attach) and
// the host's packet socket filter.
TEST_F(DaemonE2eTest, AnAttachWhoseStateCannotBeSavedIsUndoneWhole) {
  topo_->start_peer_server();
  start_daemon();
  // The state file is written to a temporary file first: a directory
  // there makes the write fail.
  const std::string blocker = state_file() + ".tmp";
  ASSERT_TRUE(std::filesystem::create_directory(blocker));
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  *req.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"});
  v1::Attachment att;
  const grpc::Status refused = attach(req, &att);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error_message().find("(undone)"), std::string::npos) << refused.error_message();
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0)
      << "the workload is held by an attachment that failed";
  EXPECT_FALSE(carries_packet_socket_filter(topo_->host_if()));
  // The first port a daemon hands out (dns.port_first's default).
  EXPECT_EQ(run_command({"ss", "-Hlnu", "sport = :20000"}).output, "")
      << "the failed attach's DNS endpoint is still open";

  std::filesystem::remove(blocker);
  ASSERT_TRUE(attach(req, &att).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

TEST_F(DaemonE2eTest, AttachByPidFindsTheProcessCgroup) {
  start_daemon();
  Child sleeper([&] {
    if (!cgroup_->add_self()) return 82;
    pause();
    return 0;
  });
  // Wait until the child has moved itself.
  std::string path;
  for (int i = 0; i < 200; ++i) {
    std::ifstream in("/proc/" + std::to_string(sleeper.pid()) + "/cgroup");
    std::getline(in, path);
    if (path.find(cgroup_->path().substr(cgroup2_root().size())) != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  v1::AttachRequest req;
  req.set_pid(static_cast<uint32_t>(sleeper.pid()));
  v1::Attachment att;
  const grpc::Status status = attach(req, &att);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(att.target(), cgroup_->path());
  EXPECT_EQ(att.applied_policy(), "builtin-default");
  // The built-in default fails closed.
  EXPECT_EQ(get_policy(att.id()).mode(), v1::MODE_ALLOWLIST);
}

// The daemon's own cgroup, and every cgroup above it, would put the daemon
// under a workload's policy: the DNS queries it forwards would be steered
// back into its own endpoints. They are refused, by path and by pid; a
// cgroup beside it is not.
TEST_F(DaemonE2eTest, ACgroupHoldingTheDaemonItselfIsRefused) {
  start_daemon();
  const std::string above_name = "sebpf-e2e-above-daemon-" + std::to_string(getpid());
  TestCgroup above(above_name);
  TestCgroup beside(above_name + "/beside");
  TestCgroup own(above_name + "/daemon");
  ScopedCgroupMove moved(own.path(), daemon_->pid());
  ASSERT_TRUE(moved.ok());
  for (const std::string& path : {own.path(), above.path()}) {
    v1::AttachRequest req;
    req.set_cgroup_path(path);
    enforce_nothing(req);
    v1::Attachment att;
    const grpc::Status status = attach(req, &att);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
    EXPECT_EQ(status.error_message().rfind("cgroup_path: " + path + " holds superebpfd itself", 0),
              0U)
        << status.error_message();
  }
  v1::AttachRequest by_pid;
  by_pid.set_pid(static_cast<uint32_t>(daemon_->pid()));
  enforce_nothing(by_pid);
  v1::Attachment att;
  const grpc::Status status = attach(by_pid, &att);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().rfind("pid: " + own.path() + " holds superebpfd itself", 0), 0U)
      << status.error_message();
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 0) << "a refused attach changed nothing";

  v1::AttachRequest next_door;
  next_door.set_cgroup_path(beside.path());
  enforce_nothing(next_door);
  const grpc::Status attached = attach(next_door, &att);
  EXPECT_TRUE(attached.ok()) << attached.error_message();
}

TEST_F(DaemonE2eTest, PolicyFileSelectsByMetadata) {
  topo_->start_peer_server();
  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\n"
                                "policies:\n"
                                "  - name: agent\n"
                                "    match: {role: agent}\n"
                                "    mode: allowlist\n"
                                "    allow_cidrs: [198.51.100.2/32]\n"
                                "    allow_domains: [mirror.example.org]\n";
  start_daemon({"--policy-file", policy_path});
  v1::AttachRequest req;
  req.set_cgroup_path(cgroup_->path());
  (*req.mutable_metadata())["role"] = "agent";
  v1::Attachment att;
  ASSERT_TRUE(attach(req, &att).ok());
  EXPECT_EQ(att.applied_policy(), "agent");
  const v1::Policy policy = get_policy(att.id());
  ASSERT_EQ(policy.domains_size(), 1);
  EXPECT_EQ(policy.domains(0).domain(), "mirror.example.org");
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
}

// Domain rules cost the daemon memory and the state file bytes, and every
// change writes that file whole: no caller may add them without end. Past
// dns.max_domain_rules a change is refused and changes nothing; a policy
// already past it (the cap was lowered at a restart) is kept whole and may
// only shed rules.
TEST_F(DaemonE2eTest, DomainRulesPastTheCapAreRefusedAndAPolicyPastALoweredCapIsKept) {
  const auto with_domains = [](std::vector<std::string> names) {
    v1::Policy policy = make_policy(v1::MODE_ALLOWLIST, {});
    for (const std::string& name : names) {
      v1::DomainRule* rule = policy.add_domains();
      rule->set_domain(name);
      rule->set_action(v1::ACTION_ALLOW);
    }
    return policy;
  };
  const auto add_domain = [this](const std::string& id, const std::string& name, v1::Action action,
                                 std::string* reason = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddDomainRequest req;
    req.set_id(id);
    req.mutable_rule()->set_domain(name);
    req.mutable_rule()->set_action(action);
    v1::Policy out;
    const grpc::Status status = stub_->AddDomain(&ctx, req, &out);
    if (reason != nullptr) *reason = reason_of(ctx);
    return status;
  };
  const auto replace = [this](const std::string& id, const v1::Policy& policy) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::ReplacePolicyRequest req;
    req.set_id(id);
    *req.mutable_policy() = policy;
    v1::Policy out;
    return stub_->ReplacePolicy(&ctx, req, &out);
  };

  // A policy-file entry past the cap: the start is refused, naming it.
  const std::string policy_path = dir() + "/policy.yaml";
  std::ofstream(policy_path) << "version: 1\n"
                                "policies:\n"
                                "  - name: long\n"
                                "    allow_domains: [a.example, b.example, c.example]\n";
  const std::string capped = config_file("dns:\n  max_domain_rules: 2\n");
  {
    // Its own directory: what it prints is no JSON log (TearDown reads ours).
    const std::string own = dir() + "/refused";
    std::filesystem::create_directory(own);
    DaemonProcess refused(SEBPF_DAEMON_PATH, own, pin_dir_,
                          {"--config", capped, "--policy-file", policy_path});
    EXPECT_EQ(refused.wait_exit(std::chrono::seconds(10)), 2);
    EXPECT_NE(refused.log().find(policy_path +
                                 ": policy \"long\": the policy would hold 3 domain rules, more "
                                 "than 2 (dns.max_domain_rules), so no attach could use it"),
              std::string::npos)
        << refused.log();
  }

  start_daemon({"--config", capped});
  v1::AttachRequest over;
  over.set_cgroup_path(cgroup_->path());
  *over.mutable_policy() = with_domains({"a.example", "b.example", "c.example"});
  v1::Attachment none;
  const grpc::Status attach_refused = attach(over, &none);
  EXPECT_EQ(attach_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(attach_refused.error_message(),
            "attach " + cgroup_->path() +
                ": the policy would hold 3 domain rules, more than 2 (dns.max_domain_rules)");
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 0) << "nothing attached";

  const v1::Attachment att = attach_cgroup(with_domains({"a.example", "b.example"}));
  std::string reason;
  const grpc::Status add_refused = add_domain(att.id(), "c.example", v1::ACTION_ALLOW, &reason);
  EXPECT_EQ(add_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(add_refused.error_message(),
            "policy of " + att.id() +
                ": the policy would hold 3 domain rules, more than 2 (dns.max_domain_rules)");
  EXPECT_EQ(reason, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(add_domain(att.id(), "a.example", v1::ACTION_DENY).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "the other action on a name held is a rule more";
  EXPECT_TRUE(add_domain(att.id(), "a.example", v1::ACTION_ALLOW).ok())
      << "a rule held already adds nothing";
  EXPECT_EQ(replace(att.id(), with_domains({"c.example", "d.example", "e.example"})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  const v1::Policy kept = get_policy(att.id());
  ASSERT_EQ(kept.domains_size(), 2) << "nothing changed";
  EXPECT_EQ(kept.domains(0).domain(), "a.example");
  EXPECT_EQ(kept.domains(1).domain(), "b.example");

  // A cap lowered at a restart: the policy is kept whole; it may shed
  // rules, not gain them.
  EXPECT_EQ(daemon_->terminate(), 0);
  start_daemon({"--config", config_file("dns:\n  max_domain_rules: 1\n")});
  EXPECT_EQ(get_policy(att.id()).domains_size(), 2);
  EXPECT_EQ(add_domain(att.id(), "c.example", v1::ACTION_ALLOW).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(replace(att.id(), with_domains({"c.example", "d.example"})).ok())
      << "as many as it holds";
  EXPECT_TRUE(replace(att.id(), with_domains({"d.example"})).ok());
  EXPECT_EQ(replace(att.id(), with_domains({"d.example", "e.example"})).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "back under the cap, it stays under";
}

// The kernel's rule tables are shared by all attachments: with
// datapath.max_cidr_rules_per_attachment set, no attachment may hold more
// CIDR rules than it, so none can take the room the others' next rules
// need. A change past it is refused and opens nothing; one that first
// makes room passes.
TEST_F(DaemonE2eTest, CidrRulesPastTheCapAreRefusedAndOpenNothing) {
  topo_->start_peer_server();
  start_daemon({"--config", config_file("datapath:\n  max_cidr_rules_per_attachment: 2\n")});
  const auto add_cidr = [this](const std::string& id, const std::string& cidr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddCidrRequest req;
    req.set_id(id);
    req.mutable_rule()->set_cidr(cidr);
    req.mutable_rule()->set_action(v1::ACTION_ALLOW);
    v1::Policy out;
    return stub_->AddCidr(&ctx, req, &out);
  };
  const std::string past_cap =
      "the policy would hold 3 CIDR rules, more than 2 (datapath.max_cidr_rules_per_attachment)";

  v1::AttachRequest over;
  over.set_cgroup_path(cgroup_->path());
  *over.mutable_policy() =
      make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32", "198.51.100.3/32", "2001:db8::2/128"});
  v1::Attachment none;
  const grpc::Status attach_refused = attach(over, &none);
  EXPECT_EQ(attach_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(attach_refused.error_message(), "attach " + cgroup_->path() + ": " + past_cap);

  const v1::Attachment att =
      attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {"198.51.100.2/32"}, {"203.0.113.9/32"}));
  const grpc::Status add_refused = add_cidr(att.id(), "198.51.100.3");
  EXPECT_EQ(add_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(add_refused.error_message(), "policy of " + att.id() + ": " + past_cap);
  EXPECT_EQ(get_policy(att.id()).cidrs_size(), 2) << "nothing changed";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::RemoveCidrRequest req;
    req.set_id(att.id());
    req.set_cidr("203.0.113.9/32");
    v1::Policy out;
    ASSERT_TRUE(stub_->RemoveCidr(&ctx, req, &out).ok());
  }
  ASSERT_TRUE(add_cidr(att.id(), "198.51.100.3").ok()) << "room made";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);
}

// Every reply to a policy call carries the whole policy, and a gRPC
// client reads at most 4 MiB by default: a change that would make the
// policy larger is refused, so that any client can read it back, and send
// it back as it is.
TEST_F(DaemonE2eTest, APolicyNeverGrowsPastWhatAClientWithDefaultLimitsCanRead) {
  // 253 characters, the longest a name may be.
  const auto longest_name = [](int n) {
    const std::string label(63, 'a');
    const std::string first = "n" + std::to_string(n) + "-";
    return first + std::string(61 - first.size(), 'a') + "." + label + "." + label + "." + label;
  };
  start_daemon({"--config", config_file("dns:\n  max_domain_rules: 20000\n")});
  v1::Policy policy = make_policy(v1::MODE_ALLOWLIST, {});
  // 261 bytes a rule: the attach request still fits 4 MiB, and a few more
  // rules fit before the policy is past the bound.
  constexpr int kAttached = 16060;
  for (int i = 0; i < kAttached; ++i) {
    v1::DomainRule* rule = policy.add_domains();
    rule->set_domain(longest_name(i));
    rule->set_action(v1::ACTION_ALLOW);
  }
  const v1::Attachment att = attach_cgroup(policy);
  grpc::Status refused;
  int added = 0;
  for (; added < 200; ++added) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    v1::AddDomainRequest req;
    req.set_id(att.id());
    req.mutable_rule()->set_domain(longest_name(kAttached + added));
    req.mutable_rule()->set_action(v1::ACTION_ALLOW);
    v1::Policy out;
    refused = stub_->AddDomain(&ctx, req, &out);
    if (!refused.ok()) break;
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(
      refused.error_message().find("(what a client with gRPC's default 4 MiB limit can read back)"),
      std::string::npos)
      << refused.error_message();
  EXPECT_GT(added, 0) << "the attach left room";

  const v1::Policy held = get_policy(att.id());
  EXPECT_EQ(held.domains_size(), kAttached + added);
  grpc::ClientContext ctx;
  ctx.set_deadline(soon());
  v1::ReplacePolicyRequest req;
  req.set_id(att.id());
  *req.mutable_policy() = held;
  v1::Policy out;
  const grpc::Status sent_back = stub_->ReplacePolicy(&ctx, req, &out);
  EXPECT_TRUE(sent_back.ok()) << sent_back.error_message();

  // Replies this large do not fit the socket at once, and gRPC then polls
  // in a thread of its own for up to 10 s, which its last shutdown waited
  // for: a stop (and so a restart's gap) must not.
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon_->terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(2))
      << "the stop waited for gRPC's poller";
}

TEST_F(DaemonE2eTest, BadInputIsRefusedNamingTheField) {
  start_daemon();
  v1::Attachment existing = attach_cgroup(make_policy(v1::MODE_ALLOWLIST, {}));

  struct Case {
    std::string what;
    std::function<grpc::Status(grpc::ClientContext*)> call;
    grpc::StatusCode code;
    std::string message_prefix;
    std::string reason;
  };
  auto attach_with = [&](std::function<void(v1::AttachRequest&)> fill) {
    return [this, fill](grpc::ClientContext* ctx) {
      v1::AttachRequest req;
      fill(req);
      v1::Attachment out;
      return stub_->Attach(ctx, req, &out);
    };
  };
  auto add_cidr = [&](std::string id, std::string cidr, v1::Action action, uint64_t ttl) {
    return [this, id, cidr, action, ttl](grpc::ClientContext* ctx) {
      v1::AddCidrRequest req;
      req.set_id(id);
      req.mutable_rule()->set_cidr(cidr);
      req.mutable_rule()->set_action(action);
      req.mutable_rule()->set_ttl_seconds(ttl);
      v1::Policy out;
      return stub_->AddCidr(ctx, req, &out);
    };
  };
  const std::string id = existing.id();
  using C = grpc::StatusCode;
  const std::vector<Case> cases = {
      {"no target", attach_with([](auto&) {}), C::INVALID_ARGUMENT, "target:", "INVALID_ARGUMENT"},
      {"missing cgroup", attach_with([](auto& r) { r.set_cgroup_path("/no/such/cgroup"); }),
       C::NOT_FOUND, "cgroup_path:", "NOT_FOUND"},
      {"cgroup outside the hierarchy", attach_with([](auto& r) { r.set_cgroup_path("/tmp"); }),
       C::INVALID_ARGUMENT, "cgroup_path:", "INVALID_ARGUMENT"},
      {"the same cgroup again",
       attach_with([this](auto& r) { r.set_cgroup_path(cgroup_->path()); }), C::ALREADY_EXISTS,
       cgroup_->path() + " is attached already as " + id, "ALREADY_ATTACHED"},
      {"bad interface name", attach_with([](auto& r) { r.set_interface_name("bad/name"); }),
       C::INVALID_ARGUMENT, "interface_name:", "INVALID_ARGUMENT"},
      {"unknown interface", attach_with([](auto& r) { r.set_interface_name("sebpfnope0"); }),
       C::NOT_FOUND, "", "NOT_FOUND"},
      {"pid 0", attach_with([](auto& r) { r.set_pid(0); }), C::INVALID_ARGUMENT,
       "pid:", "INVALID_ARGUMENT"},
      {"no such pid", attach_with([](auto& r) { r.set_pid(999999999); }), C::NOT_FOUND,
       "pid:", "NOT_FOUND"},
      {"bad metadata key", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         (*r.mutable_metadata())["bad key"] = "x";
       }),
       C::INVALID_ARGUMENT, "metadata[bad key]:", "INVALID_ARGUMENT"},
      {"policy without mode", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         r.mutable_policy()->set_dns_mode(v1::MODE_ALLOWLIST);
       }),
       C::INVALID_ARGUMENT, "policy.mode:", "INVALID_ARGUMENT"},
      {"bad CIDR in a policy", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         *r.mutable_policy() = make_policy(v1::MODE_ALLOWLIST, {"198.51.100.0/24", "300.1.1.1/8"});
       }),
       C::INVALID_ARGUMENT, "policy.cidrs[1].cidr:", "INVALID_ARGUMENT"},
      {"repeated rule", attach_with([this](auto& r) {
         r.set_interface_name(topo_->host_if());
         *r.mutable_policy() =
             make_policy(v1::MODE_ALLOWLIST, {"198.51.100.0/24", "198.51.100.0/24"});
       }),
       C::INVALID_ARGUMENT, "policy.cidrs[1]: repeats policy.cidrs[0]", "INVALID_ARGUMENT"},
      {"host bits set", add_cidr(id, "198.51.100.7/24", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "rule.cidr:", "INVALID_ARGUMENT"},
      {"no action", add_cidr(id, "198.51.100.7", v1::ACTION_UNSPECIFIED, 0), C::INVALID_ARGUMENT,
       "rule.action:", "INVALID_ARGUMENT"},
      {"TTL of a century", add_cidr(id, "198.51.100.7", v1::ACTION_ALLOW, 100ull * 365 * 86400),
       C::INVALID_ARGUMENT, "rule.ttl_seconds:", "INVALID_ARGUMENT"},
      {"empty id", add_cidr("", "198.51.100.7", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "id:", "INVALID_ARGUMENT"},
      {"malformed id", add_cidr("att-x", "198.51.100.7", v1::ACTION_ALLOW, 0), C::INVALID_ARGUMENT,
       "id:", "INVALID_ARGUMENT"},
      {"unknown id", add_cidr("att-999999", "198.51.100.7", v1::ACTION_ALLOW, 0), C::NOT_FOUND,
       "no attachment att-999999", "NOT_FOUND"},
      {"bad domain",
       [&](grpc::ClientContext* ctx) {
         v1::AddDomainRequest req;
         req.set_id(id);
         req.mutable_rule()->set_domain("bad..example");
         req.mutable_rule()->set_action(v1::ACTION_DENY);
         v1::Policy out;
         return stub_->AddDomain(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "rule.domain:", "INVALID_ARGUMENT"},
      {"removing a rule that is not there",
       [&](grpc::ClientContext* ctx) {
         v1::RemoveCidrRequest req;
         req.set_id(id);
         req.set_cidr("203.0.113.0/24");
         v1::Policy out;
         return stub_->RemoveCidr(ctx, req, &out);
       },
       C::NOT_FOUND, "no rule for 203.0.113.0/24", "NOT_FOUND"},
      {"bad mode",
       [&](grpc::ClientContext* ctx) {
         v1::SetModeRequest req;
         req.set_id(id);
         req.set_mode(static_cast<v1::Mode>(42));
         v1::Policy out;
         return stub_->SetMode(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "mode:", "INVALID_ARGUMENT"},
      {"replace without a policy",
       [&](grpc::ClientContext* ctx) {
         v1::ReplacePolicyRequest req;
         req.set_id(id);
         v1::Policy out;
         return stub_->ReplacePolicy(ctx, req, &out);
       },
       C::INVALID_ARGUMENT, "policy:", "INVALID_ARGUMENT"},
  };
  for (const Case& c : cases) {
    grpc::ClientContext ctx;
    ctx.set_deadline(soon());
    const grpc::Status status = c.call(&ctx);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.message_prefix, 0), 0U)
        << c.what << ": " << status.error_message();
    EXPECT_EQ(reason_of(ctx), c.reason) << c.what;
  }
  // None of it changed anything.
  v1::ListResponse list;
  ASSERT_TRUE(call_list(&list).ok());
  EXPECT_EQ(list.attachments_size(), 1);
  EXPECT_EQ(get_policy(id).cidrs_size(), 0);
}

}  // namespace
}  // namespace sebpf::testing
