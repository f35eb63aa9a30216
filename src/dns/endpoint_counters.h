// What one DNS endpoint counts. Apart from the proxy, so that the daemon's
// API conversion (which the fuzz build links without the proxy) can name
// it.
#pragma once

#include <cstdint>

namespace sebpf::dns {

// What one attachment's endpoint did since it was opened (GetCounters).
struct EndpointCounters {
  uint64_t queries = 0;           // every message received from clients
  uint64_t refused = 0;           // by the domain rules (never forwarded)
  uint64_t forwarded = 0;         // sent upstream (first attempt)
  uint64_t answered = 0;          // upstream answers released to clients
  uint64_t servfail = 0;          // upstreams failed, or learning failed
  uint64_t malformed = 0;         // FORMERR/NOTIMP or dropped
  uint64_t rate_limited = 0;      // over the qps, TCP client or upstream limits
  uint64_t answer_addresses = 0;  // addresses the answered ones named (passed to learn())
  uint64_t dropped_unread = 0;    // by the kernel, unread (since the sockets were made)
};

}  // namespace sebpf::dns
