// Which answers taught each learned host, so that a domain rule added
// later closes the hosts that only names it now refuses taught (a host
// stays while any name that taught it is still allowed: two names often
// share a CDN address). An answer is remembered by its chain: the name
// asked for, then each CNAME target, since the query and the chain are
// what the DNS endpoint judged. Each host keeps its chains' ids
// (LearnedHost::taught_by); this keeps each chain once, per attachment.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "daemon/policy_model.h"
#include "dns/answer_addresses.h"
#include "net/ip_prefix.h"

namespace sebpf::daemon {

class TeachingChains {
 public:
  // Keeps `chain` (as dns::encode_chain gives it) if it is new; returns
  // its id, for LearnedHost::taught.
  uint64_t add(std::string_view chain);

  // The hosts every remembered chain of which `refused` says is refused
  // now. A host with none remembered is not among them.
  std::vector<net::IpAddress> refused(
      const LearnedHosts& hosts,
      const std::function<bool(std::span<const std::string_view> names)>& refused) const;

  // Whether `chain` is kept already (add() would keep nothing more).
  bool knows(std::string_view chain) const;

  // Lets go of chains none of `hosts` names any more (hosts expire, and a
  // host remembers its latest chains only; the others stay until then).
  void compact(const LearnedHosts& hosts);
  // The same, only when they are most of what is kept.
  void compact_if_sparse(const LearnedHosts& hosts);

  // What a stopping daemon writes down (teaching_chains_file.h).
  void for_each_chain(const std::function<void(uint64_t id, std::string_view chain)>& visit) const;

  size_t chains() const { return chains_.size(); }
  // The chains' texts, what a workload's answers make this keep: by far
  // the most of it (a chain may take 4 KiB: 17 names of up to 255 bytes).
  size_t text_bytes() const { return text_.size(); }

 private:
  // Where a chain's text sits in text_.
  struct Span {
    size_t offset;
    uint32_t size;
  };
  std::string_view text_of(Span span) const { return {text_.data() + span.offset, span.size}; }

  // Chains by their hash, which is all a host keeps of them. Recording is
  // on the path of every answer, so it is one small lookup here, and a
  // new chain is appended to one buffer (an allocation of its own was 3 %
  // of the DNS threads' time with every name new). Abseil seeds its hash
  // per process, so a workload cannot make two chains collide on purpose;
  // by chance, two of a million collide with odds of about 1 in 10^7.
  absl::flat_hash_map<uint64_t, Span> chains_;
  std::string text_;  // the chains' texts, one after another
};

}  // namespace sebpf::daemon
