// Arbitrary bytes as an address and as a prefix: parsing never crashes,
// whatever parses formats canonically and parses back to itself, and
// whatever fails says why in a message that is safe to log.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "net/ip_prefix.h"

namespace {

using sebpf::net::IpAddress;
using sebpf::net::IpPrefix;

void check(bool ok) {
  if (!ok) std::abort();
}

// Every rejection is the caller's fault and printable ASCII (no log forging).
template <typename T>
void check_error(const sebpf::Result<T>& r) {
  const std::string& m = r.error().message();
  check(r.error().code() == sebpf::Errc::kInvalidArgument);
  check(!m.empty() &&
        std::all_of(m.begin(), m.end(), [](char c) { return c >= 0x20 && c < 0x7f; }));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto a = IpAddress::parse(text);
  if (a.ok()) {
    const std::string s = a->to_string();
    auto again = IpAddress::parse(s);
    check(again.ok() && *again == *a && again->to_string() == s);
    // A bare address is its host prefix, unless the mapped-range rule applies.
    auto host = IpPrefix::parse(text);
    check(host.ok() != a->is_v4_mapped());
    if (host.ok()) check(host->is_host() && host->address() == *a);
  } else {
    check_error(a);
  }

  auto p = IpPrefix::parse(text);
  if (p.ok()) {
    const std::string s = p->to_string();
    auto again = IpPrefix::parse(s);
    check(again.ok() && *again == *p && again->to_string() == s);
    check(p->contains(p->address()));
    auto made = IpPrefix::make(p->address(), p->length());
    check(made.ok() && *made == *p);
  } else {
    check_error(p);
  }
  return 0;
}
