// What the daemon's end-to-end test files share beyond their fixture: a
// call's deadline, tc's view of the daemon's filters, and attach requests
// that confine nothing or let a guest reach only the topology's host.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "support/netns.h"
#include "topology.h"

namespace sebpf::testing {

// A call's deadline: ten seconds from now.
std::chrono::system_clock::time_point soon();

// `command` as run in `ns` (ip netns exec).
std::vector<std::string> in_netns(const NetNs& ns, std::vector<std::string> command);

// Whether `dev` (in `ns`, or the host's namespace) carries the packet
// socket filter on its egress, as tc lists it.
bool carries_packet_socket_filter(const std::string& dev, const NetNs* ns = nullptr);

// Whether `dev` carries the guard and the flow tracker of an interface
// attachment (guard on ingress), as tc lists them.
bool carries_interface_filters(const std::string& dev);

// Modes disabled, so that an attach a test expects refused would, were it
// let through (the daemon's own cgroup, the host's uplink), confine nothing.
void enforce_nothing(v1::AttachRequest& req);

// A request to attach the interface `name`, modes disabled.
v1::AttachRequest interface_enforcing_nothing(const std::string& name);

// A request to attach `name` allowing the host's side of the topology
// (198.51.100.1) alone.
v1::AttachRequest interface_allowing_the_host(const std::string& name);

// What the guard of interface_allowing_the_host keeps the guest from: 0 if
// it reached a host its policy denies, ETIMEDOUT while the guard holds.
int guest_reaches_denied_host(const Topology& topo);

}  // namespace sebpf::testing
