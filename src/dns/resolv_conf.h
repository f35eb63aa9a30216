// The host's resolvers, read from resolv.conf: the DNS endpoints forward
// there when the configuration names no upstreams.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "net/socket_address.h"

namespace sebpf::dns {

// The `nameserver` lines, in order, port 53. Comments (# or ;) and other
// options are skipped; a nameserver line that is not an IP address (or has
// a zone id) is an error naming the line, never silently dropped. No
// nameserver at all is an error too: a resolver with nowhere to ask would
// answer every query SERVFAIL.
Result<std::vector<net::SocketAddress>> parse_resolv_conf(std::string_view text);
Result<std::vector<net::SocketAddress>> read_resolv_conf(const std::string& path);

}  // namespace sebpf::dns
