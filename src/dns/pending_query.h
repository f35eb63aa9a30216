// A query one of the proxy's loops took in and has not answered yet, and
// where its answer goes back to.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dns/message.h"
#include "dns/name_policy.h"
#include "net/socket_address.h"

namespace sebpf::dns {

using Clock = std::chrono::steady_clock;

// Puts `id` in a message's header.
inline void put_id(std::span<uint8_t> wire, uint16_t id) {
  wire[0] = static_cast<uint8_t>(id >> 8);
  wire[1] = static_cast<uint8_t>(id);
}

// Where an answer goes back to.
struct ClientRef {
  bool tcp = false;
  int udp_fd = -1;  // the endpoint socket the query came in on
  net::SocketAddress peer;
  uint64_t tcp_client = 0;
};

// A query a loop took in and has not answered yet. Not nested in
// DnsProxy::Loop, where it would be incomplete too long for the loop's
// spare hash-table nodes of it.
struct Pending {
  uint64_t attachment = 0;
  ClientRef client;
  Query query;
  QueryVerdict verdict = QueryVerdict::kRefuse;  // as judged when the query came
  uint64_t policy_generation = 0;                // of the policy that judged it
  std::vector<uint8_t> wire;                     // as sent upstream (make_upstream_query)
  uint16_t upstream_id = 0;
  size_t upstream = 0;
  size_t attempts_left = 0;
  bool upstream_tcp = false;
  uint64_t udp_socket = 0;     // UDP: serial of the shared socket; 0 = none
  uint64_t tcp_stream = 0;     // TCP: serial of the stream it waits on; 0 = none
  uint8_t stream_resends = 0;  // sent again after an upstream closed its stream
  Clock::time_point deadline;
  std::string chain;  // encode_chain of the answer being learned
};

}  // namespace sebpf::dns
