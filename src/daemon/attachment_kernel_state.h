// What the kernel holds of an attachment: whether its target is still
// there, and what the kernel is told of its DNS endpoint. Shared by the
// parts of AttachmentManager (attachment_*.cc).
#pragma once

#include "daemon/attachment_record.h"
#include "datapath/types.h"

namespace sebpf::daemon {

// Whether the kernel object we attached is gone (not just renamed).
bool kernel_target_gone(const AttachmentRecord& r);

// What the kernel is told of an endpoint: none while it has no address. A
// port alone names no server to let a guest's DNS through to, and the
// address an interface had would be routed on to whoever has it now.
datapath::DnsEndpoint kernel_endpoint(const datapath::DnsEndpoint& dns);

}  // namespace sebpf::daemon
