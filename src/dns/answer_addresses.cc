#include "dns/answer_addresses.h"

#include <algorithm>
#include <cstring>

namespace sebpf::dns {

Result<AnswerAddresses> addresses_for(const Message& response, std::string_view qname) {
  AnswerAddresses out;
  out.chain.emplace_back(qname);
  for (;;) {
    const std::string_view current = out.chain.back();
    const auto cname =
        std::find_if(response.answers.begin(), response.answers.end(), [&](const Record& r) {
          return r.type == type::kCname && r.klass == kClassIn && r.name == current;
        });
    if (cname == response.answers.end()) break;
    if (std::find(out.chain.begin(), out.chain.end(), cname->target) != out.chain.end()) {
      return Error(Errc::kInvalidArgument, "CNAME loop at " + cname->target.str());
    }
    if (out.chain.size() > kMaxCnameChain) {
      return Error(Errc::kInvalidArgument, "CNAME chain longer than " +
                                               std::to_string(kMaxCnameChain) + " from " +
                                               std::string(qname));
    }
    out.chain.push_back(cname->target);
  }
  for (const Record& r : response.answers) {
    if (!r.address) continue;
    if (std::find(out.chain.begin(), out.chain.end(), r.name) == out.chain.end()) continue;
    net::IpAddress address = *r.address;
    // An AAAA record holding ::ffff:a.b.c.d: a connection to it leaves as
    // IPv4 and the filter judges it by the IPv4 rules, so that is the
    // address to learn.
    if (address.is_v4_mapped()) {
      uint32_t v4 = 0;
      std::memcpy(&v4, address.bytes().data() + 12, 4);
      address = net::IpAddress::v4(v4);
    }
    out.addresses.push_back({address, r.ttl, {}});
  }
  return out;
}

std::string encode_chain(std::span<const std::string_view> names) {
  std::string chain;
  encode_chain(names, chain);
  return chain;
}

void encode_chain(std::span<const std::string_view> names, std::string& out) {
  out.clear();
  for (std::string_view name : names) {
    name = name.substr(0, 255);  // a DNS name is at most 253 bytes as text
    out.push_back(static_cast<char>(name.size()));
    out.append(name);
  }
}

std::vector<std::string_view> decode_chain(std::string_view chain) {
  std::vector<std::string_view> names;
  while (!chain.empty()) {
    const size_t length = std::min<size_t>(static_cast<uint8_t>(chain[0]), chain.size() - 1);
    names.push_back(chain.substr(1, length));
    chain.remove_prefix(1 + length);
  }
  return names;
}

}  // namespace sebpf::dns
