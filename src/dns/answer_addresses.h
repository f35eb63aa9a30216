// What an answer teaches: the CNAME chain from the name asked for, and the
// A/AAAA addresses of the names on that chain, with their TTLs (an AAAA
// holding an IPv4-mapped address teaches the IPv4 address it maps). Records of
// any other owner are ignored, so an upstream (or a forged answer) cannot
// make an attachment learn an address for a name it did not ask for.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dns/message.h"

namespace sebpf::dns {

struct LearnedAddress {
  net::IpAddress address;
  uint32_t ttl = 0;  // seconds, as the answer gave it
  // The answer's chain (encode_chain), so that a domain rule added later
  // can take the address back. A view: valid during the learn() call.
  std::string_view chain;
};

// Inline room for what a typical answer teaches: the proxy finds this for
// every answer it releases, and heap allocations were a good share of the
// cost per query.
using LearnedAddresses = absl::InlinedVector<LearnedAddress, 4>;

struct AnswerAddresses {
  // The name asked for, then each CNAME target in order. The proxy checks
  // every one against the domain rules. Views of `qname` and of the
  // message's names: valid while both are.
  absl::InlinedVector<std::string_view, 4> chain;
  LearnedAddresses addresses;
};

// A chain of names as one string: each name (at most 255 bytes) after a
// byte giving its length.
std::string encode_chain(std::span<const std::string_view> names);
// The same into `out` (replacing what it held), keeping its capacity.
void encode_chain(std::span<const std::string_view> names, std::string& out);
std::vector<std::string_view> decode_chain(std::string_view chain);

// Longest chain followed; longer (or looping) chains are errors.
inline constexpr size_t kMaxCnameChain = 16;

// `qname` in the parser's form (lowercase, no trailing dot). The result
// refers to both `response` and `qname`.
Result<AnswerAddresses> addresses_for(const Message& response, std::string_view qname);

}  // namespace sebpf::dns
