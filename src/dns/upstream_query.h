// The query the proxy sends upstream for a client's query: built anew from
// what was judged, never the client's bytes passed on.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dns/message.h"

namespace sebpf::dns {

// Writes into `out` (its capacity reused) the header, the question exactly
// as the client wrote it (so its letter case comes back in the answer, for
// clients that check it), and, when the query had one, an OPT record with
// the client's UDP size, EDNS version and DO bit and no options. Of the
// header's flags only RD, AD and CD are kept; the id is the client's, to be
// replaced by the caller's own. What else a query may carry (EDNS options
// of up to 64 KiB, unused flag bits) was judged by nothing: it is a channel
// out of the workload to whoever reads the upstream's traffic, and bytes
// every query in flight would hold. `wire` is the query parsed into
// `query`; its question is never compressed (parse_query refuses a pointer
// into the header, the only place it could point).
void make_upstream_query(const Query& query, std::span<const uint8_t> wire,
                         std::vector<uint8_t>& out);

}  // namespace sebpf::dns
