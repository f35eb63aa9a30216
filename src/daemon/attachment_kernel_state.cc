#include "daemon/attachment_kernel_state.h"

#include "datapath/system.h"

namespace sebpf::daemon {

bool kernel_target_gone(const AttachmentRecord& r) {
  if (r.kind == datapath::TargetKind::kCgroup) return !datapath::cgroup_exists(r.key.id);
  return !datapath::interface_exists(r.key.id);
}

datapath::DnsEndpoint kernel_endpoint(const datapath::DnsEndpoint& dns) {
  return dns.v4 || dns.v6 ? dns : datapath::DnsEndpoint{};
}

}  // namespace sebpf::daemon
