// Arbitrary bytes as an address and as a prefix: parsing never crashes, and
// whatever parses formats canonically and parses back to itself.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/ip_prefix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto a = sebpf::net::IpAddress::parse(text); a.ok()) {
    const std::string s = a->to_string();
    auto again = sebpf::net::IpAddress::parse(s);
    if (!again.ok() || *again != *a || again->to_string() != s) std::abort();
  }
  if (auto p = sebpf::net::IpPrefix::parse(text); p.ok()) {
    const std::string s = p->to_string();
    auto again = sebpf::net::IpPrefix::parse(s);
    if (!again.ok() || *again != *p || again->to_string() != s) std::abort();
    if (!p->contains(p->address())) std::abort();
  }
  return 0;
}
