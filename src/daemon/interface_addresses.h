// The host's addresses: never learned from an answer, and those a VM's
// DNS endpoint may be served on (the host side of its interface, or its
// bridge). Read when the interface is attached, and again whenever the
// host's addresses change, since an orchestrator may address a tap after
// attaching it, or readdress it later.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/result.h"
#include "datapath/types.h"
#include "net/ip_prefix.h"

namespace sebpf::daemon {

// Usable endpoint addresses, by interface index (an attachment's key: a
// renamed interface is still the one attached): IPv4 in the kernel's
// order (the primary address first), then IPv6 of global scope. An IPv6
// address still in duplicate address detection (tentative), or that
// failed it, is left out: binding to it fails, and the kernel announces it
// again (RTM_NEWADDR) once it is usable.
using InterfaceAddresses = absl::flat_hash_map<uint32_t, std::vector<net::IpAddress>>;

// One look at this host's addresses (its network namespace): one
// getifaddrs() and one read of /proc/net/if_inet6, however many interfaces
// are attached.
struct HostAddresses {
  // Every address, sorted, each once: an answer naming one would open the
  // host to a workload (a VM reaches it through its interface, a container
  // through its veth), so it is never learned.
  std::vector<net::IpAddress> all;
  // The addresses endpoints may be served on.
  InterfaceAddresses by_interface;
};
Result<HostAddresses> read_host_addresses();

// One interface's: its primary IPv4 address from one ioctl rather than a
// dump of every interface's (IPv6 comes from /proc/net/if_inet6, which
// lists them all either way). None if there is no such interface.
std::vector<net::IpAddress> read_interface_addresses(uint32_t ifindex);

// The interface whose addresses an attached interface's DNS endpoint is
// served on, and through which its guest's queries arrive: the bridge the
// interface is a port of (a tap enslaved to a bridge has no address of its
// own; packets through it reach the host as the bridge's), else the
// interface itself. 0 if there is no such interface.
uint32_t dns_device_of(uint32_t ifindex);

// Where the endpoint of an interface attachment is served now that the
// interface has `addresses` (as above): each family keeps its address
// while the interface still has it, else takes the interface's first one
// of that family, else has none. The port stays.
datapath::DnsEndpoint endpoint_on(const datapath::DnsEndpoint& current,
                                  std::span<const net::IpAddress> addresses);

// An IPv6 address of an interface, as /proc/net/if_inet6 lists it.
struct Ipv6Address {
  uint32_t ifindex = 0;
  net::IpAddress address;
};
// Which addresses of /proc/net/if_inet6 are wanted: those an interface's
// endpoint may be served on (global scope), or any a socket may bind to
// (loopback's ::1, of host scope, too).
enum class Ipv6Scope { kGlobal, kAny };
// Parses /proc/net/if_inet6 text: the usable IPv6 addresses (as above: not
// tentative, not failed) of `scope`, in the file's order.
std::vector<Ipv6Address> parse_if_inet6(std::string_view text,
                                        Ipv6Scope scope = Ipv6Scope::kGlobal);

// Whether a socket may bind to `address` in the network namespace whose
// if_inet6 file (/proc/<pid>/net/if_inet6) is `if_inet6_file`: a usable
// address of any scope there. Read without entering the namespace.
bool namespace_has_ipv6_address(const std::string& if_inet6_file, const net::IpAddress& address);

}  // namespace sebpf::daemon
