// A real authoritative DNS server for the DNS tests: Knot (Debian's knotd)
// on loopback, on a port of its own, serving zones the test writes, with a
// dnstap log of every query it received, so a test can show what reached
// the upstream and what never did. Stopped and its files removed on
// destruction.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "net/socket_address.h"
#include "support/process.h"

namespace sebpf::testing {

class KnotServer {
 public:
  // `zones`: origin ("example.") -> zone file text. Fails the current test
  // when knotd does not come up.
  KnotServer(const std::string& dir, uint16_t port,
             const std::map<std::string, std::string>& zones);
  ~KnotServer();
  KnotServer(const KnotServer&) = delete;
  KnotServer& operator=(const KnotServer&) = delete;

  net::SocketAddress address() const { return address_; }

  // A port on 127.0.0.1 free for both UDP and TCP now, below the kernel's
  // ephemeral range (so no outgoing connection can hold it meanwhile) and
  // below the DNS endpoints' default range.
  static uint16_t free_port();
  bool running() const { return child_ != nullptr; }

  // Stops the server (knotd writes its query log out at stop) and returns
  // the log's bytes.
  std::string stop_and_read_query_log();

  // Whether a query log holds a query for `name` ("a.example"): the name in
  // the wire form every question carries, uncompressed.
  static bool log_has_query(const std::string& log, std::string_view name);

 private:
  std::string dir_;
  std::string control_socket_;
  net::SocketAddress address_;
  std::unique_ptr<Child> child_;
};

}  // namespace sebpf::testing
