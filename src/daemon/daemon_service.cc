#include "daemon/daemon_service.h"

#include <unistd.h>

#include "daemon/api_convert.h"
#include "daemon/bypass_check.h"
#include "daemon/target_resolver.h"
#include "daemon/uplink_check.h"

namespace sebpf::daemon {

namespace {

grpc::StatusCode grpc_code(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Errc::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Errc::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case Errc::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case Errc::kUnsupported:
      return grpc::StatusCode::UNIMPLEMENTED;
    case Errc::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Errc::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case Errc::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case Errc::kInternal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNKNOWN;
}

// Stable, machine-readable reason codes (docs/api.md lists them).
std::string_view reason_code(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case Errc::kNotFound:
      return "NOT_FOUND";
    case Errc::kAlreadyExists:
      return "ALREADY_ATTACHED";
    case Errc::kPermissionDenied:
      return "KERNEL_PERMISSION_DENIED";
    case Errc::kUnsupported:
      return "KERNEL_UNSUPPORTED";
    case Errc::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case Errc::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case Errc::kUnavailable:
      return "UNAVAILABLE";
    case Errc::kInternal:
      return "INTERNAL";
  }
  return "UNKNOWN";
}

// Runs one call: `body` returns our Status; errors become gRPC statuses.
template <typename Body>
grpc::Status run(grpc::ServerContext* ctx, Logger& log, const char* method, Body&& body) {
  Status status = body();
  if (status.ok()) return grpc::Status::OK;
  log.info("call_failed", {{"method", method},
                           {"reason", std::string(reason_code(status.error().code()))},
                           {"error", status.error().message()}});
  return to_grpc_status(ctx, status.error());
}

Status policy_out(Result<Policy> policy, v1::Policy* resp) {
  if (!policy.ok()) return policy.error();
  policy_to_api(*policy, resp);
  return ok_status();
}

// The record as the API shows it, with what the target lets bypass the
// attachment right now.
void attachment_out(const AttachmentRecord& record, const std::string& cgroup_mount,
                    v1::Attachment* out) {
  attachment_to_api(record, out);
  if (record.kind != datapath::TargetKind::kCgroup) return;
  for (std::string& w : cgroup_bypass_warnings(record.target, record.guarded_netns, cgroup_mount))
    out->add_warnings(std::move(w));
}

}  // namespace

grpc::Status to_grpc_status(grpc::ServerContext* ctx, const Error& error) {
  if (ctx != nullptr) {
    ctx->AddTrailingMetadata(kReasonMetadataKey, std::string(reason_code(error.code())));
  }
  return grpc::Status(grpc_code(error.code()), error.message());
}

Status DaemonServiceImpl::refuse_own_cgroup(const std::string& target, std::string_view field) {
  // Read at every attach: a service manager may move the daemon.
  auto own = cgroup_path_of_pid(getpid(), cgroup_mount_);
  if (!own.ok()) return own.error().wrap("superebpfd's own cgroup, which no attachment may hold");
  return refuse_daemon_cgroup(target, *own, field);
}

grpc::Status DaemonServiceImpl::Attach(grpc::ServerContext* ctx, const v1::AttachRequest* req,
                                       v1::Attachment* resp) {
  return run(ctx, log_, "Attach", [&]() -> Status {
    AttachSpec spec;
    switch (req->target_case()) {
      case v1::AttachRequest::kCgroupPath: {
        spec.kind = datapath::TargetKind::kCgroup;
        SEBPF_ASSIGN_OR_RETURN(spec.target, resolve_cgroup_path(req->cgroup_path(), cgroup_mount_));
        SEBPF_RETURN_IF_ERROR(refuse_own_cgroup(spec.target, "cgroup_path"));
        break;
      }
      case v1::AttachRequest::kInterfaceName:
        spec.kind = datapath::TargetKind::kInterface;
        SEBPF_RETURN_IF_ERROR(validate_interface_name(req->interface_name()));
        SEBPF_RETURN_IF_ERROR(refuse_uplink(req->interface_name()));
        spec.target = req->interface_name();
        break;
      case v1::AttachRequest::kPid: {
        spec.kind = datapath::TargetKind::kCgroup;
        SEBPF_ASSIGN_OR_RETURN(std::string path,
                               cgroup_path_of_pid(static_cast<pid_t>(req->pid()), cgroup_mount_));
        SEBPF_ASSIGN_OR_RETURN(spec.target, resolve_cgroup_path(path, cgroup_mount_));
        SEBPF_RETURN_IF_ERROR(refuse_own_cgroup(spec.target, "pid"));
        break;
      }
      case v1::AttachRequest::TARGET_NOT_SET:
        return Error(Errc::kInvalidArgument,
                     "target: set exactly one of cgroup_path, interface_name or pid");
    }
    SEBPF_ASSIGN_OR_RETURN(spec.metadata, metadata_from_api(req->metadata(), "metadata"));
    if (req->has_policy()) {
      SEBPF_ASSIGN_OR_RETURN(spec.policy,
                             policy_from_api(req->policy(), "policy", WallClock::now()));
    }
    SEBPF_ASSIGN_OR_RETURN(AttachmentRecord record, manager_.attach(spec));
    attachment_out(record, cgroup_mount_, resp);
    for (const std::string& w : resp->warnings()) {
      log_.warning("attachment_bypassable", {{"id", record.id()}, {"detail", w}});
    }
    return ok_status();
  });
}

grpc::Status DaemonServiceImpl::Detach(grpc::ServerContext* ctx, const v1::DetachRequest* req,
                                       v1::DetachResponse*) {
  return run(ctx, log_, "Detach", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    return manager_.detach(id);
  });
}

grpc::Status DaemonServiceImpl::Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                    v1::Attachment* resp) {
  return run(ctx, log_, "Get", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(AttachmentRecord record, manager_.get(id));
    attachment_out(record, cgroup_mount_, resp);
    return ok_status();
  });
}

grpc::Status DaemonServiceImpl::List(grpc::ServerContext* ctx, const v1::ListRequest*,
                                     v1::ListResponse* resp) {
  return run(ctx, log_, "List", [&]() -> Status {
    for (const AttachmentRecord& r : manager_.list())
      attachment_out(r, cgroup_mount_, resp->add_attachments());
    return ok_status();
  });
}

grpc::Status DaemonServiceImpl::SetMode(grpc::ServerContext* ctx, const v1::SetModeRequest* req,
                                        v1::Policy* resp) {
  return run(ctx, log_, "SetMode", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(datapath::Mode mode, mode_from_api(req->mode(), "mode"));
    return policy_out(manager_.set_mode(id, mode), resp);
  });
}

grpc::Status DaemonServiceImpl::SetDnsMode(grpc::ServerContext* ctx, const v1::SetModeRequest* req,
                                           v1::Policy* resp) {
  return run(ctx, log_, "SetDnsMode", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(datapath::Mode mode, mode_from_api(req->mode(), "mode"));
    return policy_out(manager_.set_dns_mode(id, mode), resp);
  });
}

grpc::Status DaemonServiceImpl::AddCidr(grpc::ServerContext* ctx, const v1::AddCidrRequest* req,
                                        v1::Policy* resp) {
  return run(ctx, log_, "AddCidr", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(CidrRule rule,
                           cidr_rule_from_api(req->rule(), "rule", WallClock::now()));
    return policy_out(manager_.add_cidr(id, rule), resp);
  });
}

grpc::Status DaemonServiceImpl::RemoveCidr(grpc::ServerContext* ctx,
                                           const v1::RemoveCidrRequest* req, v1::Policy* resp) {
  return run(ctx, log_, "RemoveCidr", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(net::IpPrefix prefix, cidr_from_api(req->cidr(), "cidr"));
    SEBPF_ASSIGN_OR_RETURN(auto action, action_from_api(req->action(), "action", true));
    return policy_out(manager_.remove_cidr(id, prefix, action), resp);
  });
}

grpc::Status DaemonServiceImpl::AddDomain(grpc::ServerContext* ctx, const v1::AddDomainRequest* req,
                                          v1::Policy* resp) {
  return run(ctx, log_, "AddDomain", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(DomainRule rule, domain_rule_from_api(req->rule(), "rule"));
    return policy_out(manager_.add_domain(id, rule), resp);
  });
}

grpc::Status DaemonServiceImpl::RemoveDomain(grpc::ServerContext* ctx,
                                             const v1::RemoveDomainRequest* req, v1::Policy* resp) {
  return run(ctx, log_, "RemoveDomain", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(std::string name, domain_from_api(req->domain(), "domain"));
    SEBPF_ASSIGN_OR_RETURN(auto action, action_from_api(req->action(), "action", true));
    return policy_out(manager_.remove_domain(id, name, action), resp);
  });
}

grpc::Status DaemonServiceImpl::ReplacePolicy(grpc::ServerContext* ctx,
                                              const v1::ReplacePolicyRequest* req,
                                              v1::Policy* resp) {
  return run(ctx, log_, "ReplacePolicy", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    if (!req->has_policy()) return Error(Errc::kInvalidArgument, "policy: is required");
    SEBPF_ASSIGN_OR_RETURN(Policy policy,
                           policy_from_api(req->policy(), "policy", WallClock::now()));
    return policy_out(manager_.replace_policy(id, policy), resp);
  });
}

grpc::Status DaemonServiceImpl::GetPolicy(grpc::ServerContext* ctx, const v1::GetPolicyRequest* req,
                                          v1::Policy* resp) {
  return run(ctx, log_, "GetPolicy", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    return policy_out(manager_.get_policy(id), resp);
  });
}

grpc::Status DaemonServiceImpl::GetCounters(grpc::ServerContext* ctx,
                                            const v1::GetCountersRequest* req, v1::Counters* resp) {
  return run(ctx, log_, "GetCounters", [&]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(uint64_t id, attachment_id_from_api(req->id(), "id"));
    SEBPF_ASSIGN_OR_RETURN(AttachmentManager::Counters counters, manager_.counters(id));
    counters_to_api(counters.filter, resp);
    if (counters.dns) {
      dns_counters_to_api(*counters.dns, counters.learned, resp->mutable_dns());
    }
    return ok_status();
  });
}

}  // namespace sebpf::daemon
