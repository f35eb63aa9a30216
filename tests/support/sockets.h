// Real traffic for end-to-end tests. Each call answers what a user would
// see: 0 when the exchange worked, else the errno the application got
// (EPERM from a refused connect, ETIMEDOUT when packets were dropped).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/unique_fd.h"

namespace sebpf::testing {

using std::chrono::milliseconds;

// The address of a Unix socket at `path`; nullopt if the path is too long
// for one.
std::optional<sockaddr_un> unix_address(const std::string& path);
// Whether a connect() to the Unix stream socket at `path` succeeds.
bool unix_connects(const std::string& path);
// A Unix stream socket bound at `path`, listening; invalid if it could not
// be made (errno says why).
UniqueFd unix_listener(const std::string& path);

// TCP connect, then one echo round trip.
int tcp_echo(const std::string& addr, uint16_t port, milliseconds timeout = milliseconds(1500));
// UDP datagram and its echo; `connected` uses connect()+send(), else sendto().
int udp_echo(const std::string& addr, uint16_t port, bool connected,
             milliseconds timeout = milliseconds(1500));
// ICMP echo through the ping binary (a raw or ping socket, no connect hook).
int ping(const std::string& addr, milliseconds timeout = milliseconds(1500));

// A TCP connection that stays open between exchanges.
class TcpClient {
 public:
  int connect(const std::string& addr, uint16_t port, milliseconds timeout = milliseconds(1500));
  int echo(milliseconds timeout = milliseconds(1500));  // one round trip

 private:
  UniqueFd fd_;
};

// A UDP socket that stays open between exchanges: one flow, as a QUIC
// connection is. connect() makes it a connected socket (send()); aim() an
// unconnected one that names its peer in every sendto(), as a QUIC library
// serving many peers from one socket does.
class UdpClient {
 public:
  int connect(const std::string& addr, uint16_t port);
  int aim(const std::string& addr, uint16_t port);
  int echo(milliseconds timeout = milliseconds(1500));  // a datagram and its echo

 private:
  UniqueFd fd_;
  sockaddr_storage peer_{};
  socklen_t peer_len_ = 0;  // 0: connected
};

// TCP and UDP echo on [::]:port (dual stack) in the calling process, until
// killed. Meant to run in a Child, inside a test namespace.
[[noreturn]] void serve_echo(uint16_t port);

// A UDP socket bound to addr:port, to see whether a datagram a test sends
// (or forges) arrives; invalid if the bind failed.
UniqueFd udp_listener(const std::string& addr, uint16_t port);
// Whether a datagram arrives on fd within `timeout` (it is read and dropped).
bool datagram_arrives(int fd, milliseconds timeout);
// One datagram to addr:port from a fresh socket: 0, or the errno sendto()
// got (EPERM when a cgroup program refused it).
int send_datagram(const std::string& addr, uint16_t port);

// Link-layer frames, as a packet socket (AF_PACKET) sends them: a
// broadcast frame of an EtherType no stack answers, out of `ifname` (of the
// calling thread's namespace) through a new packet socket: 0, or the errno
// of socket() or sendto().
int send_frame(const std::string& ifname);
// A packet socket that sees such frames arriving on `ifname`; invalid on
// failure.
UniqueFd frame_listener(const std::string& ifname);
// Whether such a frame arrives on fd within `timeout`.
bool frame_arrives(int fd, milliseconds timeout);

// Waits until something accepts TCP on addr:port (a server started in a
// child), or the timeout passes.
bool wait_for_tcp(const std::string& addr, uint16_t port, milliseconds timeout);

}  // namespace sebpf::testing
