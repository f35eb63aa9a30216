// Responses the DNS proxy makes itself (refusals, errors) and the cut of an
// upstream answer that does not fit the client's UDP size.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dns/message.h"

namespace sebpf::dns {

// What we advertise in our OPT records: the size that avoids IP
// fragmentation on common paths (DNS flag day 2020).
inline constexpr uint16_t kOurUdpSize = 1232;

// An answer to `query` (whose wire form is `wire`) with no records and this
// rcode: same id, opcode, RD and question; RA set; an OPT record if the
// query had one.
std::vector<uint8_t> make_error_response(const Query& query, std::span<const uint8_t> wire,
                                         uint16_t rcode);

// FORMERR for a query that could not be parsed: header only (same id),
// or nothing when even the header is incomplete.
std::vector<uint8_t> make_formerr(std::span<const uint8_t> wire);

// `response` if it fits in `max_size` bytes; otherwise its header and
// question with TC set and no records but an OPT (if `response` had one),
// which tells the client to ask again over TCP (RFC 1035 4.2.1, 6891 7).
Result<std::vector<uint8_t>> fit_for_udp(std::span<const uint8_t> response, size_t max_size);

}  // namespace sebpf::dns
