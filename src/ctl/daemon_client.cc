#include "ctl/daemon_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace sebpf::ctl {
namespace {

// Long enough for an attach that waits for the kernel, short enough that a
// wedged daemon does not hang a script.
constexpr std::chrono::seconds kCallDeadline{30};
// Between tries of a call a stopping daemon cancelled.
constexpr std::chrono::milliseconds kLongestPause{500};

Errc errc_from_grpc(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Errc::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return Errc::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS:
      return Errc::kAlreadyExists;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return Errc::kPermissionDenied;
    case grpc::StatusCode::UNIMPLEMENTED:
      return Errc::kUnsupported;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Errc::kResourceExhausted;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
      return Errc::kFailedPrecondition;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Errc::kUnavailable;
    default:
      return Errc::kInternal;
  }
}

// A List of many attachments with much metadata may be larger than the
// 4 MiB gRPC reads by default (a policy never is: the daemon refuses one
// that would be); the daemon is trusted, so its replies are read whole.
std::shared_ptr<grpc::Channel> channel_to(const std::string& socket_path) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

Error error_from_status(const grpc::Status& status, const std::string& reason,
                        const std::string& socket_path) {
  const Errc code = errc_from_grpc(status.error_code());
  if (code == Errc::kUnavailable) {
    return Error(code, "no superebpfd answers on " + socket_path + " (" + status.error_message() +
                           "); is it running? --socket or SUPEREBPF_SOCKET picks another socket");
  }
  std::string message = status.error_message();
  if (!reason.empty()) message += " [" + reason + "]";
  if (reason == "PEER_NOT_ALLOWED") {
    message += "; the daemon's socket.allowed_uids / socket.allowed_gids decide who may call";
  }
  return Error(code, std::move(message));
}

DaemonClient::DaemonClient(std::string socket_path)
    : socket_path_(std::move(socket_path)),
      stub_(v1::DaemonService::NewStub(channel_to(socket_path_))) {}

// This client never cancels a call: CANCELLED comes from a daemon that
// stopped or reloaded as the call came in, before running it
// (grpc/grpc#41785), or, rarely, from one whose stop cut a call that began
// just then (a try again may then find its work done: attach answers
// ALREADY_EXISTS). The call is made again, to the process a reload
// started, as long as the deadline allows; each new try a little later.
template <typename Req, typename Resp, typename Method>
Result<Resp> DaemonClient::call(const char* name, Method method, const Req& req) {
  const auto deadline = std::chrono::system_clock::now() + kCallDeadline;
  auto pause = std::chrono::milliseconds(10);
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    Resp resp;
    const grpc::Status status = ((*stub_).*method)(&ctx, req, &resp);
    if (status.ok()) return resp;
    if (status.error_code() == grpc::StatusCode::CANCELLED &&
        std::chrono::system_clock::now() + pause < deadline) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, kLongestPause);
      continue;
    }
    std::string reason;
    const auto& trailers = ctx.GetServerTrailingMetadata();
    if (auto it = trailers.find("superebpf-reason"); it != trailers.end()) {
      reason.assign(it->second.data(), it->second.size());
    }
    return error_from_status(status, reason, socket_path_).wrap(name);
  }
}

Result<v1::Attachment> DaemonClient::attach(const v1::AttachRequest& req) {
  return call<v1::AttachRequest, v1::Attachment>("attach", &v1::DaemonService::Stub::Attach, req);
}

Status DaemonClient::detach(const std::string& id) {
  v1::DetachRequest req;
  req.set_id(id);
  auto r =
      call<v1::DetachRequest, v1::DetachResponse>("detach", &v1::DaemonService::Stub::Detach, req);
  if (!r.ok()) return r.error();
  return ok_status();
}

Result<v1::Attachment> DaemonClient::get(const std::string& id) {
  v1::GetRequest req;
  req.set_id(id);
  return call<v1::GetRequest, v1::Attachment>("get", &v1::DaemonService::Stub::Get, req);
}

Result<v1::ListResponse> DaemonClient::list() {
  return call<v1::ListRequest, v1::ListResponse>("list", &v1::DaemonService::Stub::List,
                                                 v1::ListRequest());
}

Result<v1::Policy> DaemonClient::set_mode(const std::string& id, v1::Mode mode) {
  v1::SetModeRequest req;
  req.set_id(id);
  req.set_mode(mode);
  return call<v1::SetModeRequest, v1::Policy>("mode", &v1::DaemonService::Stub::SetMode, req);
}

Result<v1::Policy> DaemonClient::set_dns_mode(const std::string& id, v1::Mode mode) {
  v1::SetModeRequest req;
  req.set_id(id);
  req.set_mode(mode);
  return call<v1::SetModeRequest, v1::Policy>("dns-mode", &v1::DaemonService::Stub::SetDnsMode,
                                              req);
}

Result<v1::Policy> DaemonClient::add_cidr(const v1::AddCidrRequest& req) {
  return call<v1::AddCidrRequest, v1::Policy>("add cidr", &v1::DaemonService::Stub::AddCidr, req);
}

Result<v1::Policy> DaemonClient::remove_cidr(const v1::RemoveCidrRequest& req) {
  return call<v1::RemoveCidrRequest, v1::Policy>("remove-cidr",
                                                 &v1::DaemonService::Stub::RemoveCidr, req);
}

Result<v1::Policy> DaemonClient::add_domain(const v1::AddDomainRequest& req) {
  return call<v1::AddDomainRequest, v1::Policy>("add domain", &v1::DaemonService::Stub::AddDomain,
                                                req);
}

Result<v1::Policy> DaemonClient::remove_domain(const v1::RemoveDomainRequest& req) {
  return call<v1::RemoveDomainRequest, v1::Policy>("remove-domain",
                                                   &v1::DaemonService::Stub::RemoveDomain, req);
}

Result<v1::Policy> DaemonClient::replace_policy(const v1::ReplacePolicyRequest& req) {
  return call<v1::ReplacePolicyRequest, v1::Policy>("replace-policy",
                                                    &v1::DaemonService::Stub::ReplacePolicy, req);
}

Result<v1::Policy> DaemonClient::get_policy(const std::string& id) {
  v1::GetPolicyRequest req;
  req.set_id(id);
  return call<v1::GetPolicyRequest, v1::Policy>("policy", &v1::DaemonService::Stub::GetPolicy, req);
}

Result<v1::Counters> DaemonClient::get_counters(const std::string& id) {
  v1::GetCountersRequest req;
  req.set_id(id);
  return call<v1::GetCountersRequest, v1::Counters>("counters",
                                                    &v1::DaemonService::Stub::GetCounters, req);
}

}  // namespace sebpf::ctl
