// A plain DNS client for tests: one query over UDP or TCP to a server, the
// answer parsed. What an ordinary stub resolver does, nothing clever.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
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

// DNS over one TCP connection, pipelined: queries go out back to back
// without blocking (what the socket does not take yet waits here), answers
// are read in whatever order they come.
class DnsTcpStream {
 public:
  // `send_buffer`: SO_SNDBUF in bytes (0: the kernel's, which grows).
  static Result<DnsTcpStream> connect(const net::SocketAddress& server, int send_buffer = 0);

  // Queues the query and sends what the socket takes now.
  Status send(const std::vector<uint8_t>& query);
  // Bytes queued that the socket has not taken yet.
  size_t unsent() const { return out_.size(); }
  // Waits up to `timeout` for the socket to take more; false if it did not.
  bool wait_writable(std::chrono::milliseconds timeout);
  // No more queries: the send side is shut (after what is queued is sent).
  Status finish_sending();
  // Sends what is queued and reads what has come, for up to `timeout`;
  // returns the answers read (empty when none came in time).
  Result<std::vector<dns::Message>> pump(std::chrono::milliseconds timeout);

 private:
  explicit DnsTcpStream(UniqueFd fd) : fd_(std::move(fd)) {}
  Status flush();

  UniqueFd fd_;
  std::vector<uint8_t> out_, in_;
  bool finishing_ = false;
};

// Many queries over one UDP socket, as a busy stub resolver sends them:
// all sent first, then the answers read, matched by id.
class DnsUdpBurst {
 public:
  // Its receive buffer holds the answers to `room` queries (past
  // net.core.rmem_max when the caller has CAP_NET_ADMIN).
  static Result<DnsUdpBurst> connect(const net::SocketAddress& server, int room = 2000);
  // Sends `count` queries for `name` (type A), ids 0 to count - 1.
  Status send(const std::string& name, uint16_t count);
  // Reads answers until each of the `count` queries sent has one or
  // `timeout` passes; the answers by id (none where none came).
  Result<std::vector<std::optional<dns::Message>>> collect(std::chrono::milliseconds timeout);

 private:
  explicit DnsUdpBurst(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint16_t sent_ = 0;
};

// The addresses of the answer's A/AAAA records, as text.
std::vector<std::string> answer_addresses(const dns::Message& message);

}  // namespace sebpf::testing
