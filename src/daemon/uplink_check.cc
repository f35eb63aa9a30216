#include "daemon/uplink_check.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>

#include "common/netlink_messages.h"
#include "common/unique_fd.h"

namespace sebpf::daemon {
namespace {

// A header of type T read from `bytes` at `offset` (attributes and next
// hops are 4-byte aligned in the message, not necessarily in memory here).
template <typename T>
T read_at(std::span<const char> bytes, size_t offset) {
  T out;
  std::memcpy(&out, bytes.data() + offset, sizeof out);
  return out;
}

void add_next_hops(std::span<const char> hops, std::vector<unsigned>& out) {
  // offset may pass the end by alignment: compared first, never subtracted past it.
  for (size_t offset = 0; offset < hops.size() && hops.size() - offset >= sizeof(rtnexthop);) {
    const auto hop = read_at<rtnexthop>(hops, offset);
    if (hop.rtnh_len < sizeof(rtnexthop) || hop.rtnh_len > hops.size() - offset) return;
    out.push_back(static_cast<unsigned>(hop.rtnh_ifindex));
    offset += RTNH_ALIGN(hop.rtnh_len);
  }
}

// Whether the kernel's main table holds a default route of `family` out
// through `ifindex`. With strict checking (Linux 4.20) the kernel sends
// only that interface's main-table routes; every answer is checked all
// the same, for a kernel that sends them all.
Result<bool> holds_default_route(int family, unsigned ifindex) {
  UniqueFd nl(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!nl) return Error::from_errno(errno, "open a netlink socket");
  const int on = 1;
  (void)setsockopt(nl.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &on, sizeof on);
  struct {
    nlmsghdr header;
    rtmsg route;
    rtattr oif_attribute;
    uint32_t oif;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = RTM_GETROUTE;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.route.rtm_family = static_cast<unsigned char>(family);
  request.route.rtm_table = RT_TABLE_MAIN;
  request.oif_attribute.rta_len = RTA_LENGTH(sizeof(uint32_t));
  request.oif_attribute.rta_type = RTA_OIF;
  request.oif = ifindex;
  if (send(nl.get(), &request, sizeof request, 0) != static_cast<ssize_t>(sizeof request)) {
    return Error::from_errno(errno, "ask for routes");
  }
  alignas(nlmsghdr) char buf[32768];
  bool found = false;
  while (true) {
    const ssize_t n = recv(nl.get(), buf, sizeof buf, 0);
    if (n < 0) return Error::from_errno(errno, "read routes");
    if (n == 0) return Error(Errc::kInternal, "read routes: netlink closed");
    const std::span<const char> datagram(buf, static_cast<size_t>(n));
    size_t offset = 0;
    while (const nlmsghdr* h = next_netlink_message(datagram, offset)) {
      if (h->nlmsg_type == NLMSG_DONE) return found;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const nlmsgerr* error = netlink_payload<nlmsgerr>(*h);
        return Error::from_errno(error != nullptr ? -error->error : EPROTO, "read routes");
      }
      const std::vector<unsigned> through = default_route_interfaces(*h);
      found = found || std::find(through.begin(), through.end(), ifindex) != through.end();
    }
  }
}

}  // namespace

std::vector<unsigned> default_route_interfaces(const nlmsghdr& message) {
  std::vector<unsigned> out;
  if (message.nlmsg_type != RTM_NEWROUTE) return out;
  const rtmsg* route = netlink_payload<rtmsg>(message);
  if (route == nullptr || route->rtm_dst_len != 0 || route->rtm_type != RTN_UNICAST ||
      route->rtm_table != RT_TABLE_MAIN) {
    return out;
  }
  const std::span<const char> attributes = netlink_attributes<rtmsg>(message);
  size_t offset = 0;
  while (const auto attribute = next_netlink_attribute(attributes, offset)) {
    if (attribute->type == RTA_OIF && attribute->value.size() >= sizeof(uint32_t)) {
      out.push_back(read_at<uint32_t>(attribute->value, 0));
    }
    if (attribute->type == RTA_MULTIPATH) add_next_hops(attribute->value, out);
  }
  return out;
}

Error uplink_error(const std::string& name) {
  return Error(Errc::kInvalidArgument,
               "interface_name: \"" + name +
                   "\" holds this host's default route, so it is an uplink, not a VM's "
                   "interface: attached, the host's own traffic through it would be judged as a "
                   "guest's (under an allowlist, every connection into the host, SSH included, "
                   "refused); attach the VM's tap or veth");
}

Status refuse_uplink(const std::string& name) {
  const unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) return ok_status();
  for (const int family : {AF_INET, AF_INET6}) {
    auto uplink = holds_default_route(family, ifindex);
    if (!uplink.ok()) return uplink.error().wrap("interface_name: the routes of \"" + name + "\"");
    if (*uplink) return uplink_error(name);
  }
  return ok_status();
}

}  // namespace sebpf::daemon
