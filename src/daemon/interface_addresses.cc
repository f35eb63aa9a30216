#include "daemon/interface_addresses.h"

#include <ifaddrs.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "common/unique_fd.h"
#include "net/socket_address.h"

namespace sebpf::daemon {
namespace {

std::string read_if_inet6(const std::string& file = "/proc/net/if_inet6") {
  std::ifstream in(file);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<unsigned> hex_field(std::string_view field) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value, 16);
  if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
  return value;
}

}  // namespace

std::vector<Ipv6Address> parse_if_inet6(std::string_view text, Ipv6Scope scope) {
  std::vector<Ipv6Address> out;
  while (!text.empty()) {
    const size_t eol = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    // "<32 hex digits> <ifindex> <prefixlen> <scope> <flags> <name>"
    std::array<std::string_view, 6> fields;
    size_t n = 0;
    while (n < fields.size()) {
      const size_t start = line.find_first_not_of(' ');
      if (start == std::string_view::npos) break;
      line.remove_prefix(start);
      const size_t end = std::min(line.find(' '), line.size());
      fields[n++] = line.substr(0, end);
      line.remove_prefix(end);
    }
    if (n != fields.size() || fields[0].size() != 32) continue;
    const auto ifindex = hex_field(fields[1]);
    const auto address_scope = hex_field(fields[3]);
    const auto flags = hex_field(fields[4]);
    // Scope 0 is global; a link-local address needs a scope the datapath
    // does not carry.
    if (!ifindex || !address_scope || (scope == Ipv6Scope::kGlobal && *address_scope != 0) ||
        !flags || (*flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) != 0) {
      continue;
    }
    std::array<uint8_t, 16> bytes{};
    bool hex_ok = true;
    for (size_t i = 0; i < bytes.size() && hex_ok; ++i) {
      const auto byte = hex_field(fields[0].substr(2 * i, 2));
      hex_ok = byte.has_value();
      if (hex_ok) bytes[i] = static_cast<uint8_t>(*byte);
    }
    if (hex_ok) out.push_back({*ifindex, net::IpAddress::v6(bytes)});
  }
  return out;
}

bool namespace_has_ipv6_address(const std::string& if_inet6_file, const net::IpAddress& address) {
  const auto listed = parse_if_inet6(read_if_inet6(if_inet6_file), Ipv6Scope::kAny);
  return std::any_of(listed.begin(), listed.end(),
                     [&](const Ipv6Address& a) { return a.address == address; });
}

Result<HostAddresses> read_host_addresses() {
  HostAddresses out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Error::from_errno(errno, "list this host's addresses");
  // getifaddrs names an address's interface only by name: an index per
  // name, asked once.
  absl::flat_hash_map<std::string, uint32_t> indexes;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    // getifaddrs also lists links (AF_PACKET): only IP addresses are kept.
    const sa_family_t family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    sockaddr_storage storage{};
    const socklen_t length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::memcpy(&storage, i->ifa_addr, length);
    auto address = net::SocketAddress::from_sockaddr(storage, length);
    if (!address.ok()) continue;
    out.all.push_back(address->address());
    // IPv6 endpoint addresses come from if_inet6, which has their flags.
    if (family != AF_INET) continue;
    auto [index, added] = indexes.try_emplace(i->ifa_name, 0);
    if (added) index->second = if_nametoindex(i->ifa_name);
    if (index->second == 0) continue;  // gone meanwhile, or a label ("eth0:1")
    out.by_interface[index->second].push_back(address->address());
  }
  freeifaddrs(list);
  std::sort(out.all.begin(), out.all.end());
  out.all.erase(std::unique(out.all.begin(), out.all.end()), out.all.end());
  for (const Ipv6Address& a : parse_if_inet6(read_if_inet6())) {
    out.by_interface[a.ifindex].push_back(a.address);
  }
  return out;
}

std::vector<net::IpAddress> read_interface_addresses(uint32_t ifindex) {
  std::vector<net::IpAddress> out;
  char name[IF_NAMESIZE];
  if (if_indextoname(ifindex, name) == nullptr) return out;
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq req{};
  std::memcpy(req.ifr_name, name, sizeof name);
  if (sock && ioctl(sock.get(), SIOCGIFADDR, &req) == 0) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&req.ifr_addr);
    out.push_back(net::IpAddress::v4(sin->sin_addr.s_addr));
  }
  for (const Ipv6Address& a : parse_if_inet6(read_if_inet6())) {
    if (a.ifindex == ifindex) out.push_back(a.address);
  }
  return out;
}

uint32_t dns_device_of(uint32_t ifindex) {
  char name[IF_NAMESIZE];
  if (if_indextoname(ifindex, name) == nullptr) return 0;
  // "master" links to the directory of the device this one is enslaved
  // to; it is gone before the kernel announces a release (RTM_NEWLINK),
  // where brport/ may linger. Only a bridge has bridge/.
  const std::filesystem::path devices("/sys/class/net");
  std::error_code ec;
  const auto master = std::filesystem::read_symlink(devices / name / "master", ec).filename();
  if (ec || !std::filesystem::is_directory(devices / master / "bridge", ec)) return ifindex;
  return if_nametoindex(master.c_str());
}

datapath::DnsEndpoint endpoint_on(const datapath::DnsEndpoint& current,
                                  std::span<const net::IpAddress> addresses) {
  const auto pick = [&](const std::optional<net::IpAddress>& now, net::Family family) {
    if (now && std::find(addresses.begin(), addresses.end(), *now) != addresses.end()) return now;
    const auto first = std::find_if(addresses.begin(), addresses.end(),
                                    [&](const net::IpAddress& a) { return a.family() == family; });
    return first == addresses.end() ? std::nullopt : std::optional(*first);
  };
  datapath::DnsEndpoint next = current;
  next.v4 = pick(current.v4, net::Family::kIPv4);
  next.v6 = pick(current.v6, net::Family::kIPv6);
  return next;
}

}  // namespace sebpf::daemon
