#include "policy/domain_name.h"

#include <algorithm>

#include "net/ip_prefix.h"

namespace sebpf::policy {
namespace {

Error invalid(std::string_view text, const std::string& why) {
  std::string shown;
  for (char c : text.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    shown += (u >= 0x20 && u < 0x7f && c != '"') ? c : '?';  // safe to log
  }
  return Error(Errc::kInvalidArgument, "\"" + shown + "\" is not a valid domain name: " + why);
}

bool label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

Result<std::string> normalize_domain(std::string_view text) {
  std::string name(text);
  std::transform(name.begin(), name.end(), name.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty()) return invalid(text, "it is empty");
  if (name.size() > 253) return invalid(text, "it is longer than 253 characters");
  if (net::IpAddress::parse(name).ok()) {
    return invalid(text, "it is an IP address; write it as a CIDR rule instead");
  }
  if (name.find('*') != std::string::npos) {
    return invalid(text, "wildcards are not needed: a rule for a name covers its subdomains");
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    const std::string_view label(name.data() + start, end - start);
    if (label.empty()) return invalid(text, "it has an empty label (\"..\" or a leading dot)");
    if (label.size() > 63) return invalid(text, "a label is longer than 63 characters");
    if (!std::all_of(label.begin(), label.end(), label_char)) {
      // DNS carries an internationalized name only in its ASCII form.
      const bool ascii = std::all_of(label.begin(), label.end(),
                                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
      return invalid(text, ascii ? "labels may hold only letters, digits, '-' and '_'"
                                 : "it is not ASCII; write an internationalized name in its "
                                   "\"xn--\" form (IDNA), as DNS carries it");
    }
    if (label.front() == '-' || label.back() == '-') {
      return invalid(text, "a label starts or ends with '-'");
    }
    start = end + 1;
  }
  return name;
}

}  // namespace sebpf::policy
