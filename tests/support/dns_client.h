// A plain DNS client for tests: one query over UDP or TCP to a server, the
// answer parsed. What an ordinary stub resolver does, nothing clever.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "dns/message.h"
#include "net/socket_address.h"

namespace sebpf::testing {

// "a.example" as DNS labels on the wire, ending with the root label.
std::vector<uint8_t> wire_name(std::string_view dotted);

// The wire form of a standard query with RD set and an EDNS OPT record
// advertising `udp_size` (none when 0).
std::vector<uint8_t> make_query(const std::string& name, uint16_t type, uint16_t id = 0x5eb,
                                uint16_t udp_size = 1232);

struct DnsAnswer {
  std::vector<uint8_t> wire;
  dns::Message message;
};

// Errc::kUnavailable when no answer came in time.
Result<DnsAnswer> dns_query(const net::SocketAddress& server, const std::vector<uint8_t>& query,
                            bool tcp = false,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
Result<DnsAnswer> dns_query(const net::SocketAddress& server, const std::string& name,
                            uint16_t type, bool tcp = false);

// The addresses of the answer's A/AAAA records, as text.
std::vector<std::string> answer_addresses(const dns::Message& message);

}  // namespace sebpf::testing
