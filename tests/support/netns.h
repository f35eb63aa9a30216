// Network namespaces and veth pairs for tests, removed on destruction (and
// replaced at creation if a crashed run left one with the same name).
#pragma once

#include <string>

namespace sebpf::testing {

class NetNs {
 public:
  explicit NetNs(std::string name);
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;
  ~NetNs();

  const std::string& name() const { return name_; }
  // Moves the calling thread into the namespace (use in a forked child).
  bool enter() const;

 private:
  std::string name_;
};

// A veth pair: `host` stays in the current namespace, `peer` moves to `ns`.
class VethPair {
 public:
  VethPair(std::string host, std::string peer, const NetNs& ns);
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;
  ~VethPair();

  const std::string& host() const { return host_; }
  const std::string& peer() const { return peer_; }

 private:
  std::string host_;
  std::string peer_;
};

// A bridge in the current namespace, up, removed on destruction (its ports
// are released, not removed).
class Bridge {
 public:
  explicit Bridge(std::string name);
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;
  ~Bridge();

  const std::string& name() const { return name_; }
  void add_port(const std::string& interface) const;

 private:
  std::string name_;
};

// Renames an interface of the current namespace (down, as the kernel
// wants for that, then up again).
void rename_link(const std::string& from, const std::string& to);

// `ip addr add` (IPv6 without duplicate address detection, so it is usable
// at once); ns empty for the current namespace.
void add_address(const std::string& ns, const std::string& dev, const std::string& cidr);

}  // namespace sebpf::testing
