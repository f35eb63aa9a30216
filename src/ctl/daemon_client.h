// superebpfctl's side of the daemon API: one call per method, each giving
// the daemon's answer or an Error that keeps its code and reason.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "superebpf/v1/daemon.grpc.pb.h"

namespace sebpf::ctl {

namespace v1 = ::superebpf::v1;

inline constexpr const char* kDefaultSocket = "/run/superebpf/superebpfd.sock";

class DaemonClient {
 public:
  explicit DaemonClient(std::string socket_path);

  Result<v1::Attachment> attach(const v1::AttachRequest& req);
  Status detach(const std::string& id);
  Result<v1::Attachment> get(const std::string& id);
  Result<v1::ListResponse> list();
  Result<v1::Policy> set_mode(const std::string& id, v1::Mode mode);
  Result<v1::Policy> set_dns_mode(const std::string& id, v1::Mode mode);
  Result<v1::Policy> add_cidr(const v1::AddCidrRequest& req);
  Result<v1::Policy> remove_cidr(const v1::RemoveCidrRequest& req);
  Result<v1::Policy> add_domain(const v1::AddDomainRequest& req);
  Result<v1::Policy> remove_domain(const v1::RemoveDomainRequest& req);
  Result<v1::Policy> replace_policy(const v1::ReplacePolicyRequest& req);
  Result<v1::Policy> get_policy(const std::string& id);
  Result<v1::Counters> get_counters(const std::string& id);

 private:
  template <typename Req, typename Resp, typename Method>
  Result<Resp> call(const char* name, Method method, const Req& req);

  std::string socket_path_;
  std::unique_ptr<v1::DaemonService::Stub> stub_;
};

// What a failed call means, from its gRPC status and the daemon's reason
// code (trailing metadata "superebpf-reason"). Exposed for tests.
Error error_from_status(const grpc::Status& status, const std::string& reason,
                        const std::string& socket_path);

}  // namespace sebpf::ctl
