// The messages of one netlink datagram, walked without trusting their
// lengths. NLMSG_OK, NLMSG_NEXT and NLMSG_DATA do the same with C casts
// (which the build's warnings refuse); the datapath and the daemon both
// read netlink, so the walk is written once, here.
#pragma once

#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
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

// A message's attributes: the bytes after its fixed payload (empty if the
// message is too short to hold one).
template <typename Payload>
std::span<const char> netlink_attributes(const nlmsghdr& h) {
  const size_t start = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(Payload));
  if (h.nlmsg_len <= start) return {};
  return {reinterpret_cast<const char*>(&h) + start, h.nlmsg_len - start};
}

struct NetlinkAttribute {
  uint16_t type;  // without the nested and byte-order flags
  std::span<const char> value;
};

// The next whole attribute of `attributes` (a message's, or a nested
// attribute's value) at `offset` (advanced past it), or none when none is
// left: as for messages, a length that is too short or runs past the end
// ends the walk. Attributes are 4-byte aligned in the message, not
// necessarily in memory here, so the header is copied out.
inline std::optional<NetlinkAttribute> next_netlink_attribute(std::span<const char> attributes,
                                                              size_t& offset) {
  // offset may pass the end by alignment: compared first, never subtracted past it.
  if (offset >= attributes.size() || attributes.size() - offset < sizeof(nlattr)) {
    return std::nullopt;
  }
  nlattr header;
  std::memcpy(&header, attributes.data() + offset, sizeof header);
  if (header.nla_len < sizeof(nlattr) || header.nla_len > attributes.size() - offset) {
    return std::nullopt;
  }
  const NetlinkAttribute attribute{
      static_cast<uint16_t>(header.nla_type & NLA_TYPE_MASK),
      attributes.subspan(offset + NLA_HDRLEN, header.nla_len - NLA_HDRLEN)};
  offset += NLA_ALIGN(header.nla_len);
  return attribute;
}

// Whether a link message (RTM_DELLINK) says the link moved to another
// network namespace (IFLA_NEW_NETNSID) rather than was deleted.
inline bool link_moved_to_another_namespace(const nlmsghdr& h) {
  const std::span<const char> attributes = netlink_attributes<ifinfomsg>(h);
  size_t offset = 0;
  while (const auto attribute = next_netlink_attribute(attributes, offset)) {
    if (attribute->type == IFLA_NEW_NETNSID) return true;
  }
  return false;
}

// The id of the BPF program a TC filter message (RTM_NEWTFILTER) describes,
// TCA_BPF_ID in its options; 0 for a filter of another kind.
inline uint32_t tc_filter_program_id(const nlmsghdr& h) {
  const std::span<const char> attributes = netlink_attributes<tcmsg>(h);
  size_t offset = 0;
  while (const auto attribute = next_netlink_attribute(attributes, offset)) {
    if (attribute->type != TCA_OPTIONS) continue;
    size_t inner = 0;
    while (const auto option = next_netlink_attribute(attribute->value, inner)) {
      if (option->type != TCA_BPF_ID || option->value.size() < sizeof(uint32_t)) continue;
      uint32_t id = 0;
      std::memcpy(&id, option->value.data(), sizeof id);
      return id;
    }
  }
  return 0;
}

}  // namespace sebpf
