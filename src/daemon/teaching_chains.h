// Which answers taught each learned host, so that a domain rule added
// later closes the hosts that only names it now refuses taught (a host
// stays while any name that taught it is still allowed: two names often
// share a CDN address). An answer is remembered by its chain: the name
// asked for, then each CNAME target, since the query and the chain are
// what the DNS endpoint judged.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "dns/answer_addresses.h"
#include "net/ip_prefix.h"

namespace sebpf::daemon {

class TeachingChains {
 public:
  // A host remembers this many chains, the latest (more would let one
  // address shared by many names cost without bound).
  static constexpr size_t kMaxChainsPerHost = 8;

  // `chain` as dns::encode_chain gives it.
  void record(const net::IpAddress& host, std::string_view chain);
  void forget(const net::IpAddress& host);
  // Whether a chain is remembered for the host.
  bool taught(const net::IpAddress& host) const { return by_host_.contains(host); }

  // The hosts every remembered chain of which `refused` says is refused
  // now. A host with none remembered (learned before a restart) is not
  // among them (see taught()).
  std::vector<net::IpAddress> refused(
      const std::function<bool(std::span<const std::string_view> names)>& refused) const;

  // Lets go of chains no host remembers any more, when they are most of
  // what is kept (hosts expire; their chains stay until then).
  void compact_if_sparse();

  // What a stopping daemon writes down (teaching_chains_file.h): each
  // chain with an id, and each host with its chains' ids, oldest first.
  // record() in that order puts them back.
  void for_each_chain(const std::function<void(uint64_t id, std::string_view chain)>& visit) const;
  void for_each_host(const std::function<void(const net::IpAddress& host,
                                              std::span<const uint64_t> chain_ids)>& visit) const;

  size_t hosts() const { return by_host_.size(); }
  size_t chains() const { return chains_.size(); }

 private:
  // Chains by their hash, which is all a host keeps of them. Recording is
  // on the path of every answer, so it is one small lookup here and one
  // per host, with no copy of a chain already known. Abseil seeds its hash
  // per process, so a workload cannot make two chains collide on purpose;
  // by chance, two of a million collide with odds of about 1 in 10^7.
  absl::flat_hash_map<uint64_t, std::string> chains_;
  absl::flat_hash_map<net::IpAddress, absl::InlinedVector<uint64_t, 1>, net::IpAddressHash>
      by_host_;
};

}  // namespace sebpf::daemon
