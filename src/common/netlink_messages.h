// The messages of one netlink datagram, walked without trusting their
// lengths. NLMSG_OK, NLMSG_NEXT and NLMSG_DATA do the same with C casts
// (which the build's warnings refuse); the datapath and the daemon both
// read netlink, so the walk is written once, here.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <span>

namespace sebpf {

// The next whole message of `datagram` at `offset` (advanced past it), or
// null when none is left: a header that does not fit, or a length that is
// shorter than a header or runs past the end, ends the walk.
inline const nlmsghdr* next_netlink_message(std::span<const char> datagram, size_t& offset) {
  if (offset >= datagram.size() || datagram.size() - offset < sizeof(nlmsghdr)) return nullptr;
  const auto* h = reinterpret_cast<const nlmsghdr*>(datagram.data() + offset);
  if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > datagram.size() - offset) return nullptr;
  offset += NLMSG_ALIGN(h->nlmsg_len);
  return h;
}

// A message's fixed payload (an ifinfomsg, a tcmsg …), or null if the
// message is too short to hold one.
template <typename Payload>
const Payload* netlink_payload(const nlmsghdr& h) {
  if (h.nlmsg_len < NLMSG_LENGTH(sizeof(Payload))) return nullptr;
  return reinterpret_cast<const Payload*>(reinterpret_cast<const char*>(&h) + NLMSG_HDRLEN);
}

}  // namespace sebpf
