// superebpf.v1.DaemonService: checks each request's fields (api_convert.h),
// calls the AttachmentManager, and maps our errors onto gRPC status codes
// with a stable reason code in the "superebpf-reason" trailing metadata.
#pragma once

#include <string>
#include <string_view>

#include "daemon/attachment_manager.h"
#include "daemon/logger.h"
#include "superebpf/v1/daemon.grpc.pb.h"

namespace sebpf::daemon {

inline constexpr char kReasonMetadataKey[] = "superebpf-reason";

class DaemonServiceImpl final : public v1::DaemonService::Service {
 public:
  DaemonServiceImpl(AttachmentManager& manager, std::string cgroup_mount, Logger& log)
      : manager_(manager), cgroup_mount_(std::move(cgroup_mount)), log_(log) {}

  grpc::Status Attach(grpc::ServerContext* ctx, const v1::AttachRequest* req,
                      v1::Attachment* resp) override;
  grpc::Status Detach(grpc::ServerContext* ctx, const v1::DetachRequest* req,
                      v1::DetachResponse* resp) override;
  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                   v1::Attachment* resp) override;
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    v1::ListResponse* resp) override;
  grpc::Status SetMode(grpc::ServerContext* ctx, const v1::SetModeRequest* req,
                       v1::Policy* resp) override;
  grpc::Status SetDnsMode(grpc::ServerContext* ctx, const v1::SetModeRequest* req,
                          v1::Policy* resp) override;
  grpc::Status AddCidr(grpc::ServerContext* ctx, const v1::AddCidrRequest* req,
                       v1::Policy* resp) override;
  grpc::Status RemoveCidr(grpc::ServerContext* ctx, const v1::RemoveCidrRequest* req,
                          v1::Policy* resp) override;
  grpc::Status AddDomain(grpc::ServerContext* ctx, const v1::AddDomainRequest* req,
                         v1::Policy* resp) override;
  grpc::Status RemoveDomain(grpc::ServerContext* ctx, const v1::RemoveDomainRequest* req,
                            v1::Policy* resp) override;
  grpc::Status ReplacePolicy(grpc::ServerContext* ctx, const v1::ReplacePolicyRequest* req,
                             v1::Policy* resp) override;
  grpc::Status GetCounters(grpc::ServerContext* ctx, const v1::GetCountersRequest* req,
                           v1::Counters* resp) override;
  grpc::Status GetPolicy(grpc::ServerContext* ctx, const v1::GetPolicyRequest* req,
                         v1::Policy* resp) override;

 private:
  // refuse_daemon_cgroup against the cgroup the daemon is in now.
  Status refuse_own_cgroup(const std::string& target, std::string_view field);

  AttachmentManager& manager_;
  std::string cgroup_mount_;
  Logger& log_;
};

// The gRPC status for one of our errors, with its reason code attached to
// the call's trailing metadata.
grpc::Status to_grpc_status(grpc::ServerContext* ctx, const Error& error);

}  // namespace sebpf::daemon
