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

// A header-only answer (same id and opcode) for a query that could not be
// parsed (FORMERR) or asks for an opcode we do not serve (NOTIMP); nothing
// when even the header is incomplete.
std::vector<uint8_t> make_header_response(std::span<const uint8_t> wire, uint16_t rcode);

// Lowers every record TTL in `wire` (the wire form `message` was parsed
// from) to at most `max_ttl`, so no client caches an address longer than
// the filter will allow it. The OPT record, whose TTL field holds flags, is
// not touched.
void cap_ttls(std::span<uint8_t> wire, const Message& message, uint32_t max_ttl);

// `response` if it fits in `max_size` bytes; otherwise its header and
// question with TC set and no records but an OPT (if `response` had one),
// which tells the client to ask again over TCP (RFC 1035 4.2.1, 6891 7).
Result<std::vector<uint8_t>> fit_for_udp(std::span<const uint8_t> response, size_t max_size);

}  // namespace sebpf::dns
