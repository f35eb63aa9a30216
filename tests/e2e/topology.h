// The network the end-to-end tests build: a namespace of test hosts joined
// to this one by a veth pair, on documentation addresses only. 192.0.2.0/24
// is left alone: sandboxes use it for their own uplink.
//
//   this namespace (host)            namespace "sebpf-e2e-<tag>" (peer)
//   veth <host_if>                   veth <peer_if>
//     198.51.100.1/24                     198.51.100.2/24, 198.51.100.3/24
//     203.0.113.1/24                  203.0.113.2/24
//     2001:db8::1/64                   2001:db8::2/64, 2001:db8::3/64
//
// Echo servers (TCP and UDP, port kEchoPort) can run on either side.
#pragma once

#include <memory>
#include <string>

#include "support/netns.h"
#include "support/process.h"

namespace sebpf::testing {

// Below the kernel's ephemeral range (32768-60999), so no outgoing
// connection's local port can hold it when a server starts; below the
// range the DNS tests' upstream picks from (10000-19999) too.
constexpr uint16_t kEchoPort = 9707;

// Empty if no interface of this host uses the test ranges; otherwise the
// offending address. The tests refuse to run then: their traffic could
// leave the machine (some sandboxes put documentation ranges on eth0).
std::string test_ranges_in_use();

class Topology {
 public:
  Topology();
  ~Topology();

  const NetNs& ns() const { return *ns_; }
  const std::string& host_if() const { return veth_->host(); }
  const std::string& peer_if() const { return veth_->peer(); }
  const std::string& tag() const { return tag_; }

  // Echo servers: in the peer namespace (reached at 198.51.100.2 etc.), and
  // in this namespace (reached from the peer at 198.51.100.1 etc.).
  void start_peer_server();
  void start_host_server();

  // Runs fn in a child inside the peer namespace; returns its exit code.
  int run_in_peer(const std::function<int()>& fn) const;

 private:
  std::string tag_;
  std::unique_ptr<NetNs> ns_;
  std::unique_ptr<VethPair> veth_;
  std::unique_ptr<Child> peer_server_;
  std::unique_ptr<Child> host_server_;
};

}  // namespace sebpf::testing
