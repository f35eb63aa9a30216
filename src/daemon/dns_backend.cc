#include "daemon/dns_backend.h"

#include <algorithm>
#include <thread>

#include "daemon/api_convert.h"
#include "dns/resolv_conf.h"

namespace sebpf::daemon {

void DnsBackend::report(std::string_view event, uint64_t attachment, std::string_view detail) {
  if (attachment == 0) {
    report_limit_.warning(log_, event, 0, {{"detail", std::string(detail)}});
    return;
  }
  report_limit_.warning(
      log_, event, attachment,
      {{"id", attachment_id_to_api(attachment)}, {"detail", std::string(detail)}});
}

Result<dns::ProxyConfig> proxy_config(const DaemonConfig& config) {
  dns::ProxyConfig out;
  out.upstreams = config.dns_upstreams;
  if (out.upstreams.empty()) {
    auto from_file = dns::read_resolv_conf(config.dns_resolv_conf);
    if (!from_file.ok()) {
      return from_file.error().wrap("DNS upstreams (set dns.upstreams, or fix dns.resolv_conf)");
    }
    out.upstreams = std::move(*from_file);
  }
  out.upstream_timeout = config.dns_upstream_timeout;
  out.min_ttl = config.dns_min_ttl;
  out.max_ttl = config.dns_max_ttl;
  out.refusal_rcode = config.dns_refusal_rcode;
  out.max_inflight = config.dns_max_inflight;
  out.max_qps = config.dns_max_qps;
  out.max_tcp_clients = config.dns_max_tcp_clients;
  out.receive_buffer_bytes = config.dns_receive_buffer_bytes;
  out.max_upstream_qps = config.dns_max_upstream_qps;
  out.answer_spin = config.dns_answer_spin;
  out.threads = config.dns_threads != 0 ? config.dns_threads
                                        : std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  return out;
}

}  // namespace sebpf::daemon
