#include "dns/proxy.h"

#include <fcntl.h>

#include <cerrno>

#include "dns/inherited_sockets.h"
#include "dns/proxy_endpoint.h"
#include "dns/proxy_loop.h"
#include "dns/upstream_budget.h"

namespace sebpf::dns {

DnsProxy::DnsProxy(const ProxyConfig& config, ProxyBackend& backend)
    : config_(config),
      backend_(backend),
      accept_gate_(std::make_unique<AcceptGate>()),
      upstream_budget_(config.max_upstream_qps == 0
                           ? nullptr
                           : std::make_unique<UpstreamBudget>(config.max_upstream_qps)) {}

DnsProxy::~DnsProxy() = default;

Result<std::unique_ptr<DnsProxy>> DnsProxy::start(const ProxyConfig& config, ProxyBackend& backend,
                                                  std::unique_ptr<InheritedSockets> inherited) {
  if (config.min_ttl > config.max_ttl) {
    return Error(Errc::kInvalidArgument, "DNS min_ttl is above max_ttl");
  }
  if (config.threads == 0) return Error(Errc::kInvalidArgument, "DNS threads must be at least 1");
  std::unique_ptr<DnsProxy> proxy(new DnsProxy(config, backend));
  proxy->inherited_ = std::move(inherited);
  proxy->accept_gate_->spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!proxy->accept_gate_->spare) return Error::from_errno(errno, "open /dev/null");
  for (unsigned i = 0; i < config.threads; ++i) {
    auto loop = std::make_unique<Loop>(config, backend, *proxy->accept_gate_,
                                       proxy->upstream_budget_.get(), i);
    SEBPF_RETURN_IF_ERROR(loop->init());
    proxy->loops_.push_back(std::move(loop));
  }
  return proxy;
}

Result<std::shared_ptr<Endpoint>> DnsProxy::bind(const EndpointSpec& spec, const Endpoint* kept) {
  std::vector<std::string> skipped;
  SEBPF_ASSIGN_OR_RETURN(
      std::shared_ptr<Endpoint> endpoint,
      bind_endpoint(spec, kept, inherited_.get(), config_.receive_buffer_bytes, skipped));
  for (const std::string& why : skipped) {
    backend_.report("dns_endpoint_address_skipped", spec.attachment, why);
  }
  return endpoint;
}

Status DnsProxy::open_endpoint(const EndpointSpec& spec) {
  SEBPF_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint, bind(spec, nullptr));
  endpoint->counts = std::shared_ptr<CountSlot[]>(new CountSlot[loops_.size()]);
  std::lock_guard lock(mu_);
  if (!open_.emplace(spec.attachment, endpoint).second) {
    return Error(Errc::kAlreadyExists,
                 "attachment " + std::to_string(spec.attachment) + " has a DNS endpoint already");
  }
  for (auto& loop : loops_) loop->open_endpoint(endpoint);
  report_sockets(*endpoint);
  return ok_status();
}

void DnsProxy::report_sockets(const Endpoint& endpoint) {
  absl::InlinedVector<int, 4> fds;
  for (const auto* sockets : {&endpoint.udp, &endpoint.tcp}) {
    for (const UniqueFd& fd : *sockets) fds.push_back(fd.get());
  }
  backend_.endpoint_sockets(endpoint.attachment, fds);
}

Status DnsProxy::move_endpoint(const EndpointSpec& spec) {
  std::shared_ptr<Endpoint> old;
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(spec.attachment); it != open_.end()) old = it->second;
  }
  if (old == nullptr) return open_endpoint(spec);
  SEBPF_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint, bind(spec, old.get()));
  endpoint->counts = old->counts;
  std::lock_guard lock(mu_);
  auto it = open_.find(spec.attachment);
  if (it == open_.end() || it->second != old) {
    return Error(Errc::kUnavailable, "the DNS endpoint of attachment " +
                                         std::to_string(spec.attachment) +
                                         " was closed or moved meanwhile");
  }
  it->second = endpoint;
  // Each loop lets go of the old endpoint and serves the new one in one
  // task, handing on what came in on the addresses both have.
  for (auto& loop : loops_) loop->move_endpoint(endpoint);
  report_sockets(*endpoint);
  return ok_status();
}

void DnsProxy::close_endpoint(uint64_t attachment) {
  std::lock_guard lock(mu_);
  if (open_.erase(attachment) == 0) return;
  for (auto& loop : loops_) loop->close_endpoint(attachment);
  backend_.endpoint_sockets(attachment, {});
}

std::vector<net::SocketAddress> DnsProxy::served_addresses(uint64_t attachment) const {
  std::lock_guard lock(mu_);
  auto it = open_.find(attachment);
  return it == open_.end() ? std::vector<net::SocketAddress>() : it->second->addresses;
}

std::optional<EndpointCounters> DnsProxy::counters(uint64_t attachment) const {
  std::shared_ptr<Endpoint> endpoint;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(attachment);
    if (it == open_.end()) return std::nullopt;
    endpoint = it->second;
  }
  const auto sum = [&](Count c) {
    uint64_t total = 0;
    for (size_t i = 0; i < loops_.size(); ++i) total += endpoint->counts[i].get(c);
    return total;
  };
  return EndpointCounters{.queries = sum(Count::kQueries),
                          .refused = sum(Count::kRefused),
                          .forwarded = sum(Count::kForwarded),
                          .answered = sum(Count::kAnswered),
                          .servfail = sum(Count::kServfail),
                          .malformed = sum(Count::kMalformed),
                          .rate_limited = sum(Count::kRateLimited),
                          .answer_addresses = sum(Count::kAnswerAddresses),
                          .dropped_unread = dropped_unread(*endpoint)};
}

size_t DnsProxy::close_unclaimed_sockets() {
  return inherited_ == nullptr ? 0 : inherited_->close_unclaimed();
}

Result<std::vector<UniqueFd>> DnsProxy::duplicate_endpoint_sockets() const {
  std::lock_guard lock(mu_);
  std::vector<UniqueFd> copies;
  for (const auto& [attachment, endpoint] : open_) {
    for (const auto* fds : {&endpoint->udp, &endpoint->tcp}) {
      for (const UniqueFd& fd : *fds) {
        SEBPF_ASSIGN_OR_RETURN(UniqueFd copy, duplicate_socket(fd));
        copies.push_back(std::move(copy));
      }
    }
  }
  return copies;
}

bool DnsProxy::drain() {
  // A query tries each upstream in turn; a moment more for the last answer.
  const auto deadline =
      std::chrono::steady_clock::now() + config_.upstream_timeout * (config_.upstreams.size() + 1);
  for (auto& loop : loops_) loop->drain();
  bool all = true;
  for (auto& loop : loops_) {
    all = loop->finished().wait_until(deadline) == std::future_status::ready && all;
  }
  return all;
}

}  // namespace sebpf::dns
