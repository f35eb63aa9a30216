// AttachmentManager's DNS endpoints: where each is served (a port of its
// own, on addresses the workload reaches), and following an interface's
// addresses and bridge as they change.

#include <net/if.h>

#include <algorithm>
#include <set>

#include "daemon/attachment_kernel_state.h"
#include "daemon/attachment_manager.h"
#include "datapath/system.h"

namespace sebpf::daemon {

using datapath::TargetKind;

namespace {

// Whether the attachment's target is gone, or, for an interface, the
// device its endpoint is served on (itself or its bridge): the link's
// event, next, detaches the attachment or moves the endpoint.
bool endpoint_device_gone(const AttachmentRecord& r) {
  return kernel_target_gone(r) ||
         (r.kind == TargetKind::kInterface && !datapath::interface_exists(r.dns_device));
}

// Whether an address an interface's endpoint was to be served on has left
// its device (flushed, or an IPv6 address gone with the link going down):
// that address's event, next, moves the endpoint.
bool endpoint_address_gone(const AttachmentRecord& r) {
  if (r.kind != TargetKind::kInterface) return false;
  const std::vector<net::IpAddress> now = read_interface_addresses(r.dns_device);
  const auto gone = [&](const std::optional<net::IpAddress>& address) {
    return address && std::find(now.begin(), now.end(), *address) == now.end();
  };
  return gone(r.dns.v4) || gone(r.dns.v6);
}

}  // namespace

Status AttachmentManager::open_dns_endpoint_locked(const AttachmentRecord& record, int netns_fd,
                                                   EndpointChange change) {
  if (dns_proxy_ == nullptr) return ok_status();
  dns::EndpointSpec spec;
  spec.attachment = record.number;
  if (record.dns.v4) spec.addresses.emplace_back(*record.dns.v4, record.dns.port);
  if (record.dns.v6) spec.addresses.emplace_back(*record.dns.v6, record.dns.port);
  // A VM's endpoint takes only what arrives through its own interface (or
  // its bridge: see the datapath's sebpf_is_other_dns_endpoint), and of
  // that only what its guard passed: not another guest's of the bridge.
  spec.device_ifindex = record.dns_device;
  if (record.kind == TargetKind::kInterface &&
      record.direction == datapath::TcDirection::kIngress) {
    spec.socket_filter_fd = dp_->endpoint_socket_filter();
  }
  // A container in a network namespace of its own has its DNS steered to
  // its own loopback: the endpoint's sockets are made there.
  spec.netns_fd = netns_fd;
  if (netns_fd >= 0) {
    log_.info("dns_endpoint_in_workload_netns", {{"id", record.id()}, {"target", record.target}});
  }
  if (spec.addresses.empty()) {
    // Named, as a tap's bridge is where the address is missing.
    char device[IF_NAMESIZE] = "";
    (void)if_indextoname(record.dns_device, device);
    log_.warning("dns_endpoint_without_address",
                 {{"id", record.id()},
                  {"target", record.target},
                  {"device", device},
                  {"impact", "no address to serve DNS on (until the device gets one)"}});
    if (change == EndpointChange::kMove) dns_proxy_->close_endpoint(record.number);
    return ok_status();
  }
  return change == EndpointChange::kMove ? dns_proxy_->move_endpoint(spec)
                                         : dns_proxy_->open_endpoint(spec);
}

void AttachmentManager::set_dns_proxy(dns::DnsProxy* proxy) {
  std::lock_guard lock(mu_);
  dns_proxy_ = proxy;
  for (const AttachmentRecord& r : state_.records) {
    auto netns = workload_netns(r);
    auto opened = netns.ok() ? open_dns_endpoint_locked(r, netns->get()) : netns.error();
    if (!opened.ok()) log_endpoint_failure_locked(r, opened.error());
  }
}

void AttachmentManager::log_endpoint_failure_locked(const AttachmentRecord& record,
                                                    const Error& why) {
  // Deleted meanwhile (a bind to an address that went with it): no fault.
  if (endpoint_device_gone(record)) {
    log_.info("dns_endpoint_target_gone",
              {{"id", record.id()}, {"target", record.target}, {"error", why.message()}});
    return;
  }
  // Its address taken away meanwhile (a bind to it fails): no fault either.
  if (endpoint_address_gone(record)) {
    log_.info("dns_endpoint_address_gone",
              {{"id", record.id()}, {"target", record.target}, {"error", why.message()}});
    return;
  }
  log_.error("dns_endpoint_failed", {{"id", record.id()}, {"error", why.message()}});
}

void AttachmentManager::on_host_addresses_changed() {
  // Read outside the lock: a dump of every address, while DNS answers wait
  // on mu_ to be learned.
  auto addresses = read_host_addresses();
  if (!addresses.ok()) {
    log_.error("host_addresses_unread", {{"error", addresses.error().message()}});
    return;
  }
  std::lock_guard lock(mu_);
  if (set_host_addresses_locked(addresses->all)) {
    log_.info("host_addresses_changed", {{"addresses", std::to_string(host_addresses_.size())}});
  }
  follow_interface_addresses_locked(addresses->by_interface);
}

void AttachmentManager::follow_interface_addresses_locked(const InterfaceAddresses& addresses) {
  bool moved = false;
  for (AttachmentRecord& r : state_.records) {
    if (r.kind != TargetKind::kInterface) continue;
    const auto it = addresses.find(r.dns_device);
    const datapath::DnsEndpoint now =
        endpoint_on(r.dns, it == addresses.end() ? std::span<const net::IpAddress>()
                                                 : std::span<const net::IpAddress>(it->second));
    if (now == r.dns) continue;
    // A device deleted loses its addresses first; the link's own event,
    // next, detaches the attachment or moves its endpoint off a bridge.
    // (Looked up only then: two system calls per attachment at every
    // address event would be taken under the lock DNS answers wait on.)
    if (!now.v4 && !now.v6 && endpoint_device_gone(r)) continue;
    move_dns_endpoint_locked(r, now);
    moved = true;
  }
  if (!moved) return;
  save_or_log_locked();
}

bool AttachmentManager::follow_dns_device_locked(AttachmentRecord& record) {
  const uint32_t device = dns_device_of(static_cast<uint32_t>(record.key.id));
  if (device == 0 || device == record.dns_device) return false;
  record.dns_device = device;
  // Moved even if the addresses are the same: the sockets must take what
  // arrives through the new device.
  move_dns_endpoint_locked(record, endpoint_on(record.dns, read_interface_addresses(device)));
  return true;
}

void AttachmentManager::move_dns_endpoint_locked(AttachmentRecord& record,
                                                 const datapath::DnsEndpoint& to) {
  record.dns = to;
  // The sockets first: once the kernel names the new address as the only
  // DNS server the guest may ask, its queries find them there.
  if (auto moved = open_dns_endpoint_locked(record, -1, EndpointChange::kMove); !moved.ok()) {
    log_endpoint_failure_locked(record, moved.error());
  }
  // Failing this (a map write refused), the kernel still names the old
  // endpoint: DNS to it is let through, to an address the interface may
  // no longer have, until the next address change moves it.
  if (Status set = dp_->set_dns_endpoint(record.key, kernel_endpoint(to)); !set.ok()) {
    log_.error("dns_endpoint_not_moved", {{"id", record.id()}, {"error", set.error().message()}});
    return;
  }
  log_.info("dns_endpoint_moved", {{"id", record.id()},
                                   {"target", record.target},
                                   {"ipv4", to.v4 ? to.v4->to_string() : ""},
                                   {"ipv6", to.v6 ? to.v6->to_string() : ""},
                                   {"port", std::to_string(to.port)}});
}

Result<uint16_t> AttachmentManager::allocate_dns_port_locked() {
  std::set<uint16_t> used;
  for (const AttachmentRecord& r : state_.records) used.insert(r.dns.port);
  const uint32_t first = config_.dns_port_first;
  const uint32_t range = config_.dns_port_last - first + 1;
  for (uint32_t i = 0; i < range; ++i) {
    const uint32_t port = first + (next_dns_port_ + i) % range;
    if (used.count(static_cast<uint16_t>(port))) continue;
    next_dns_port_ = port - first + 1;
    return static_cast<uint16_t>(port);
  }
  return Error(Errc::kResourceExhausted,
               "every DNS endpoint port in " + std::to_string(config_.dns_port_first) + "-" +
                   std::to_string(config_.dns_port_last) + " is taken (dns.port_first/port_last)");
}

}  // namespace sebpf::daemon
