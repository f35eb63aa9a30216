#include "dns_fixture.h"

namespace sebpf::testing {

const char* const kExampleZone = R"($TTL 300
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
allowed A 198.51.100.2
allowed AAAA 2001:db8::2
allowed TXT "hello"
denied.allowed A 198.51.100.3
other A 198.51.100.3
www.allowed CNAME web.allowed
web.allowed CNAME edge.cdn
edge.cdn A 203.0.113.2
sneaky.allowed CNAME x.blocked
x.blocked A 198.51.100.3
short 1 A 203.0.113.2
metadata.allowed A 169.254.169.254
metadata.allowed AAAA fd00:ec2::254
mapped.allowed AAAA ::ffff:169.254.169.254
nat64.allowed AAAA 64:ff9b::a9fe:a9fe
internal.allowed A 10.1.2.3
host.allowed A 198.51.100.1
host.allowed AAAA 2001:db8::1
later.allowed A 203.0.113.77
*.wild A 198.51.100.90
)"
                                 // 40 addresses: more than a client without EDNS may take over UDP.
                                 R"(big A 198.51.100.10
big A 198.51.100.11
big A 198.51.100.12
big A 198.51.100.13
big A 198.51.100.14
big A 198.51.100.15
big A 198.51.100.16
big A 198.51.100.17
big A 198.51.100.18
big A 198.51.100.19
big A 198.51.100.20
big A 198.51.100.21
big A 198.51.100.22
big A 198.51.100.23
big A 198.51.100.24
big A 198.51.100.25
big A 198.51.100.26
big A 198.51.100.27
big A 198.51.100.28
big A 198.51.100.29
big A 198.51.100.30
big A 198.51.100.31
big A 198.51.100.32
big A 198.51.100.33
big A 198.51.100.34
big A 198.51.100.35
big A 198.51.100.36
big A 198.51.100.37
big A 198.51.100.38
big A 198.51.100.39
big A 198.51.100.40
big A 198.51.100.41
big A 198.51.100.42
big A 198.51.100.43
big A 198.51.100.44
big A 198.51.100.45
big A 198.51.100.46
big A 198.51.100.47
big A 198.51.100.48
big A 198.51.100.49
)"
                                 R"(ten A 198.51.100.50
ten A 198.51.100.51
ten A 198.51.100.52
ten A 198.51.100.53
ten A 198.51.100.54
ten A 198.51.100.55
ten A 198.51.100.56
ten A 198.51.100.57
ten A 198.51.100.58
ten A 198.51.100.59
)"
                                 R"(twenty A 198.51.100.60
twenty A 198.51.100.61
twenty A 198.51.100.62
twenty A 198.51.100.63
twenty A 198.51.100.64
twenty A 198.51.100.65
twenty A 198.51.100.66
twenty A 198.51.100.67
twenty A 198.51.100.68
twenty A 198.51.100.69
twenty A 198.51.100.70
twenty A 198.51.100.71
twenty A 198.51.100.72
twenty A 198.51.100.73
twenty A 198.51.100.74
twenty A 198.51.100.75
twenty A 198.51.100.76
twenty A 198.51.100.77
twenty A 198.51.100.78
twenty A 198.51.100.79
)";

v1::Policy dns_policy(const std::vector<std::string>& allow_domains,
                      const std::vector<std::string>& deny_domains,
                      const std::vector<std::string>& deny_cidrs) {
  v1::Policy p = make_policy(v1::MODE_ALLOWLIST, {}, deny_cidrs);
  p.set_dns_mode(v1::MODE_ALLOWLIST);
  for (const auto& d : allow_domains) {
    auto* r = p.add_domains();
    r->set_domain(d);
    r->set_action(v1::ACTION_ALLOW);
  }
  for (const auto& d : deny_domains) {
    auto* r = p.add_domains();
    r->set_domain(d);
    r->set_action(v1::ACTION_DENY);
  }
  return p;
}

net::SocketAddress endpoint_of(const v1::Attachment& att) {
  return {*net::IpAddress::parse(att.dns().ipv4()), static_cast<uint16_t>(att.dns().port())};
}

int resolve_and_connect(const net::SocketAddress& endpoint, const std::string& name, uint16_t type,
                        bool tcp) {
  auto answer = dns_query(endpoint, make_query(name, type), tcp);
  if (!answer.ok()) {
    std::fprintf(stderr, "query %s: %s\n", name.c_str(), answer.error().message().c_str());
    return kNoAnswer;
  }
  if (answer->message.header.rcode != dns::rcode::kNoError) {
    return kRcodeBase + answer->message.header.rcode;
  }
  const auto addresses = answer_addresses(answer->message);
  if (addresses.empty()) return kNoAnswer;
  return tcp_echo(addresses.back(), kEchoPort);
}

UniqueFd send_udp_query(const net::SocketAddress& resolver, const std::string& name) {
  sockaddr_storage to;
  const socklen_t len = resolver.to_sockaddr(to);
  UniqueFd fd(socket(resolver.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const auto query = make_query(name, kTypeA);
  if (!fd ||
      sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to), len) < 0) {
    return UniqueFd();
  }
  return fd;
}

int udp_connect(const std::string& address, uint16_t port) {
  const net::SocketAddress to(*net::IpAddress::parse(address), port);
  sockaddr_storage ss;
  const socklen_t len = to.to_sockaddr(ss);
  const int fd = socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  const int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

}  // namespace sebpf::testing
