// The DNS proxy's view of the daemon: domain rules and learning go to the
// attachment manager, reports to the log, endpoints' sockets to systemd's
// file descriptor store.
#pragma once

#include "daemon/attachment_manager.h"
#include "daemon/fd_store.h"
#include "daemon/log_rate_limit.h"
#include "daemon/logger.h"
#include "dns/proxy.h"

namespace sebpf::daemon {

class DnsBackend final : public dns::ProxyBackend {
 public:
  DnsBackend(AttachmentManager& manager, FdStore& fd_store, Logger& log)
      : manager_(manager), fd_store_(fd_store), log_(log) {}

  std::shared_ptr<const dns::NamePolicy> name_policy(uint64_t attachment) override {
    return manager_.name_policy(attachment);
  }
  uint64_t policy_generation() const override { return manager_.name_policy_generation(); }
  Result<dns::LearnOutcome> learn(uint64_t attachment,
                                  std::span<const dns::LearnedAddress> addresses,
                                  uint64_t judged_at) override {
    return manager_.learn(attachment, addresses, judged_at);
  }
  // Reports follow what workloads send (a timeout per query to a silent
  // upstream, say): rate-limited per event and attachment, each line with
  // how many were left out before it (kWorkloadLinesPerSource), and over
  // all of them together (kWorkloadLinesOverall).
  void report(std::string_view event, uint64_t attachment, std::string_view detail) override;
  void endpoint_sockets(uint64_t attachment, std::span<const int> fds) override {
    fd_store_.put(endpoint_store_name(attachment), fds);
  }

 private:
  AttachmentManager& manager_;
  FdStore& fd_store_;
  Logger& log_;
  LogRateLimit report_limit_{kWorkloadLinesPerSource, kWorkloadLinesOverall};
};

// The proxy's settings from the daemon's configuration; the upstreams come
// from resolv.conf when the configuration names none.
Result<dns::ProxyConfig> proxy_config(const DaemonConfig& config);

}  // namespace sebpf::daemon
