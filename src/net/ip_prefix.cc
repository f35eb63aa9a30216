#include "net/ip_prefix.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace sebpf::net {
namespace {

// The longest text form: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".
constexpr size_t kMaxAddressText = 45;
// Enough of the input to recognise it, without flooding a log line.
constexpr size_t kMaxQuoted = 64;

// The input in double quotes, safe to log: it comes from API callers, so
// control and non-ASCII bytes are escaped and cannot forge log lines.
std::string quote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char ch : text.substr(0, kMaxQuoted)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (text.size() > kMaxQuoted) out += "...";
  out += '"';
  return out;
}

Error invalid(std::string_view text, std::string_view what, std::string_view why) {
  return Error(Errc::kInvalidArgument,
               quote(text) + " is not a valid " + std::string(what) + ": " + std::string(why));
}

bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

bool is_address_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
         c == ':';
}

bool is_decimal(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "010" is octal to inet_aton and some libcs' inet_pton, decimal to others:
// refuse it rather than guess which the user meant.
bool has_leading_zero_octet(std::string_view dotted) {
  size_t start = 0;
  while (start <= dotted.size()) {
    size_t end = dotted.find('.', start);
    if (end == std::string_view::npos) end = dotted.size();
    if (end - start > 1 && dotted[start] == '0') return true;
    start = end + 1;
  }
  return false;
}

// Why `text` cannot be an address, found before inet_pton so that the message
// is specific and the answer does not depend on how lenient the libc is.
// Empty if inet_pton may decide.
std::string syntax_problem(std::string_view text) {
  if (text.empty()) return "it is empty";
  auto has = [text](auto pred) { return std::any_of(text.begin(), text.end(), pred); };
  if (has(is_space)) return "it contains whitespace";
  if (has([](char c) { return c == '%'; })) {
    return "zone ids (\"%eth0\") are not allowed in rules; remove the \"%\" suffix";
  }
  if (has([](char c) { return c == '[' || c == ']'; })) return "remove the brackets";
  if (has([](char c) { return c == '/'; })) {
    return "it has a prefix length, but a single address is expected here";
  }
  // This also catches NUL bytes, which would end the C string inet_pton sees.
  const auto bad = std::find_if_not(text.begin(), text.end(), is_address_char);
  if (bad != text.end()) {
    return "it contains " + quote(std::string_view(&*bad, 1)) +
           "; only digits, a-f, \".\" and \":\" can appear (host names are not resolved)";
  }
  if (text.size() > kMaxAddressText) return "it is too long to be an IP address";
  if (text.find(':') == std::string_view::npos) {
    const auto parts = std::count(text.begin(), text.end(), '.') + 1;
    if (parts != 4) {
      return "an IPv4 address has exactly 4 dot-separated parts, this has " + std::to_string(parts);
    }
  }
  // All of an IPv4 address, or the dotted tail of one like "::ffff:192.0.2.1".
  const size_t colon = text.rfind(':');
  const std::string_view dotted = colon == std::string_view::npos ? text : text.substr(colon + 1);
  if (dotted.find('.') != std::string_view::npos && has_leading_zero_octet(dotted)) {
    return "an octet has a leading zero (octal or decimal?); remove it";
  }
  return "";
}

}  // namespace

Result<IpAddress> IpAddress::parse(std::string_view text) {
  const std::string problem = syntax_problem(text);
  if (!problem.empty()) return invalid(text, "IP address", problem);
  const std::string c_text(text);  // NUL-free: checked above
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, c_text.c_str(), &v4) != 1) {
      return invalid(text, "IP address", "each IPv4 part must be a decimal number 0 to 255");
    }
    std::memcpy(a.bytes_.data(), &v4, sizeof(v4));
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, c_text.c_str(), &v6) != 1) {
    return invalid(text, "IP address", "malformed IPv6, expected a form like 2001:db8::1");
  }
  a.family_ = Family::kIPv6;
  std::memcpy(a.bytes_.data(), &v6, sizeof(v6));
  return a;
}

IpAddress IpAddress::v4(uint32_t network_order) {
  IpAddress a;
  std::memcpy(a.bytes_.data(), &network_order, 4);
  return a;
}

IpAddress IpAddress::v6(const std::array<uint8_t, 16>& bytes) {
  IpAddress a;
  a.family_ = Family::kIPv6;
  a.bytes_ = bytes;
  return a;
}

uint32_t IpAddress::v4_network_order() const {
  uint32_t v = 0;
  std::memcpy(&v, bytes_.data(), 4);
  return v;
}

bool IpAddress::is_v4_mapped() const {
  static constexpr std::array<uint8_t, 12> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return family_ == Family::kIPv6 && std::equal(kMapped.begin(), kMapped.end(), bytes_.begin());
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family_ == Family::kIPv4 ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

Result<IpPrefix> IpPrefix::checked(const IpAddress& address, int length, std::string_view text) {
  // Errors show the input as given, or (from make, whose callers mostly
  // pass valid prefixes) as address/length, built only when needed.
  const auto shown = [&] {
    return text.empty() ? address.to_string() + "/" + std::to_string(length) : std::string(text);
  };
  const int max = address.max_prefix_length();
  if (length < 0 || length > max) {
    return invalid(shown(), "CIDR prefix",
                   "the prefix length must be 0 to " + std::to_string(max) +
                       (max == 32 ? " for IPv4" : " for IPv6"));
  }
  const IpAddress base = address.masked(length);
  if (base != address) {
    // Guessing which rule was meant is not our call: name the fix instead.
    return invalid(shown(), "CIDR prefix",
                   "host bits are set after the first " + std::to_string(length) +
                       " bits; did you mean \"" + base.to_string() + "/" + std::to_string(length) +
                       "\"?");
  }
  // Packets to ::ffff:a.b.c.d leave as IPv4, so such a rule would never match.
  if (length >= 96 && address.is_v4_mapped()) {
    uint32_t v4 = 0;
    std::memcpy(&v4, address.bytes().data() + 12, 4);
    return invalid(shown(), "CIDR prefix",
                   "the kernel sees IPv4-mapped addresses (::ffff:0:0/96) as IPv4, so this rule "
                   "would never match; use " +
                       IpAddress::v4(v4).to_string() + "/" + std::to_string(length - 96));
  }
  IpPrefix p;
  p.address_ = address;
  p.length_ = length;
  return p;
}

IpAddress IpAddress::masked(int length) const {
  std::array<uint8_t, 16> b = bytes_;
  for (size_t i = 0; i < b.size(); ++i) {
    const int keep = std::clamp(length - static_cast<int>(i) * 8, 0, 8);
    b[i] &= static_cast<uint8_t>(0xff00 >> keep);  // the top `keep` bits
  }
  IpAddress out = *this;
  out.bytes_ = b;
  return out;
}

size_t IpAddressHash::operator()(const IpAddress& address) const noexcept {
  uint64_t words[2];
  std::memcpy(words, address.bytes().data(), sizeof words);
  // Two multiply-xorshift rounds (the splitmix64 finalizer): every input bit
  // reaches every output bit, at a few cycles per word.
  const auto mix = [](uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  return static_cast<size_t>(
      mix(words[0] ^ mix(words[1] ^ static_cast<uint64_t>(address.family()))));
}

Result<IpPrefix> IpPrefix::make(const IpAddress& address, int length) {
  return checked(address, length, {});
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    SEBPF_ASSIGN_OR_RETURN(const IpAddress address, IpAddress::parse(text));
    return checked(address, address.max_prefix_length(), text);
  }
  const std::string_view address_text = text.substr(0, slash);
  const std::string_view length_text = text.substr(slash + 1);
  if (address_text.empty()) {
    return invalid(text, "CIDR prefix", "the address before \"/\" is missing");
  }
  auto address = IpAddress::parse(address_text);
  if (!address.ok()) return address.error().wrap(quote(text) + " is not a valid CIDR prefix");
  if (length_text.empty()) {
    return invalid(text, "CIDR prefix", "the prefix length after \"/\" is missing");
  }
  if (length_text.find('/') != std::string_view::npos) {
    return invalid(text, "CIDR prefix", "it has more than one \"/\"");
  }
  if (!is_decimal(length_text)) {
    return invalid(text, "CIDR prefix", "the prefix length must be a plain decimal number like 24");
  }
  if (length_text.size() > 1 && length_text[0] == '0') {
    return invalid(text, "CIDR prefix", "remove the leading zero from the prefix length");
  }
  // More than 3 digits is out of range for both families; 1000 stands for it
  // and spares us overflow checks.
  int length = 0;
  if (length_text.size() > 3) {
    length = 1000;
  } else {
    for (const char c : length_text) length = length * 10 + (c - '0');
  }
  return checked(*address, length, text);
}

bool IpPrefix::contains(const IpAddress& a) const {
  return a.family() == family() && a.masked(length_) == address_;
}

std::string IpPrefix::to_string() const {
  return address_.to_string() + "/" + std::to_string(length_);
}

}  // namespace sebpf::net
