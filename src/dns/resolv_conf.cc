#include "dns/resolv_conf.h"

#include <sstream>

#include "common/text_file.h"

namespace sebpf::dns {

Result<std::vector<net::SocketAddress>> parse_resolv_conf(std::string_view text) {
  std::vector<net::SocketAddress> out;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::string keyword, value;
    if (!(words >> keyword) || keyword[0] == '#' || keyword[0] == ';') continue;
    if (keyword != "nameserver") continue;
    if (!(words >> value)) {
      return Error(Errc::kInvalidArgument,
                   "line " + std::to_string(number) + ": nameserver without an address");
    }
    auto address = net::IpAddress::parse(value);
    if (!address.ok()) {
      return Error(Errc::kInvalidArgument,
                   "line " + std::to_string(number) + ": " + address.error().message());
    }
    out.emplace_back(*address, 53);
  }
  if (out.empty()) return Error(Errc::kInvalidArgument, "no nameserver line");
  return out;
}

Result<std::vector<net::SocketAddress>> read_resolv_conf(const std::string& path) {
  SEBPF_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "dns.resolv_conf"));
  auto parsed = parse_resolv_conf(text);
  if (!parsed.ok()) return parsed.error().wrap(path);
  return parsed;
}

}  // namespace sebpf::dns
