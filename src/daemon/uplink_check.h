// Whether an interface is a host's uplink: it holds a default route. A
// VM's tap or veth never does. Attached, an uplink would have the host's
// own traffic judged as a guest's: under an allowlist, every connection
// into the host (SSH included) refused.
#pragma once

#include <linux/netlink.h>

#include <string>
#include <vector>

#include "common/result.h"

namespace sebpf::daemon {

// The interfaces (ifindex) one route message sends a unicast default route
// (prefix length 0, IPv4 or IPv6) of the main table through: its next hop,
// or each of several. Empty for any other route, and for reject, blackhole
// and unreachable defaults (the kernel lists one on lo).
std::vector<unsigned> default_route_interfaces(const nlmsghdr& message);

// What an attach of an uplink is refused with, and what the daemon logs
// when an attached interface becomes one.
Error uplink_error(const std::string& name);

// Refuses, as Errc::kInvalidArgument naming the field interface_name, an
// interface that holds a default route. The kernel is asked for that
// interface's routes only, so the cost does not grow with the host's
// interfaces. One that does not exist passes (the attach then says so).
Status refuse_uplink(const std::string& name);

}  // namespace sebpf::daemon
