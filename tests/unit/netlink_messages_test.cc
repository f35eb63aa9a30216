#include "common/netlink_messages.h"

#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>

#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace sebpf {
namespace {

// A datagram of messages as the kernel lays them out: each padded to
// NLMSG_ALIGNTO; `payload` bytes of zeros after each header.
class Datagram {
 public:
  Datagram& add(uint16_t type, size_t payload, uint32_t claimed_length = 0) {
    nlmsghdr h{};
    h.nlmsg_len = claimed_length != 0 ? claimed_length : NLMSG_LENGTH(payload);
    h.nlmsg_type = type;
    const size_t at = bytes_.size();
    bytes_.resize(at + NLMSG_SPACE(payload));
    std::memcpy(bytes_.data() + at, &h, sizeof h);
    return *this;
  }
  std::span<const char> span() const { return bytes_; }
  void truncate(size_t size) { bytes_.resize(size); }

 private:
  std::vector<char> bytes_;  // heap storage: aligned for any header
};

std::vector<uint16_t> types(std::span<const char> datagram) {
  std::vector<uint16_t> seen;
  size_t offset = 0;
  while (const nlmsghdr* h = next_netlink_message(datagram, offset)) seen.push_back(h->nlmsg_type);
  return seen;
}

TEST(NetlinkMessagesTest, EveryWholeMessageInOrder) {
  Datagram d;
  d.add(RTM_NEWLINK, sizeof(ifinfomsg)).add(RTM_DELLINK, sizeof(ifinfomsg)).add(NLMSG_DONE, 4);
  EXPECT_EQ(types(d.span()), (std::vector<uint16_t>{RTM_NEWLINK, RTM_DELLINK, NLMSG_DONE}));
  EXPECT_TRUE(types({}).empty());
}

TEST(NetlinkMessagesTest, ALengthThatLiesEndsTheWalk) {
  Datagram past_the_end;
  past_the_end.add(RTM_NEWLINK, sizeof(ifinfomsg)).add(RTM_DELLINK, 0, /*claimed_length=*/4096);
  EXPECT_EQ(types(past_the_end.span()), std::vector<uint16_t>{RTM_NEWLINK});

  Datagram shorter_than_a_header;
  shorter_than_a_header.add(RTM_NEWLINK, 0, /*claimed_length=*/4).add(RTM_DELLINK, 0);
  EXPECT_TRUE(types(shorter_than_a_header.span()).empty()) << "a zero-progress loop otherwise";

  Datagram cut;
  cut.add(RTM_NEWLINK, sizeof(ifinfomsg));
  cut.truncate(sizeof(nlmsghdr) - 1);
  EXPECT_TRUE(types(cut.span()).empty());
}

TEST(NetlinkMessagesTest, APayloadOnlyWhenTheMessageHoldsOne) {
  Datagram d;
  d.add(RTM_NEWLINK, sizeof(ifinfomsg)).add(RTM_NEWLINK, sizeof(ifinfomsg) - 1);
  size_t offset = 0;
  const nlmsghdr* whole = next_netlink_message(d.span(), offset);
  const nlmsghdr* short_one = next_netlink_message(d.span(), offset);
  ASSERT_NE(whole, nullptr);
  ASSERT_NE(short_one, nullptr);
  EXPECT_EQ(static_cast<const void*>(netlink_payload<ifinfomsg>(*whole)),
            static_cast<const void*>(reinterpret_cast<const char*>(whole) + NLMSG_HDRLEN));
  EXPECT_EQ(netlink_payload<ifinfomsg>(*short_one), nullptr);
}

// Attributes as the kernel lays them out: a header, the value, padding to
// NLA_ALIGNTO. `claimed_length` 0: the true length.
class Attributes {
 public:
  Attributes& add(uint16_t type, std::span<const char> value, uint16_t claimed_length = 0) {
    nlattr a{};
    a.nla_len =
        claimed_length != 0 ? claimed_length : static_cast<uint16_t>(NLA_HDRLEN + value.size());
    a.nla_type = type;
    const size_t at = bytes_.size();
    bytes_.resize(at + NLA_HDRLEN + NLA_ALIGN(value.size()));
    std::memcpy(bytes_.data() + at, &a, sizeof a);
    if (!value.empty()) std::memcpy(bytes_.data() + at + NLA_HDRLEN, value.data(), value.size());
    return *this;
  }
  Attributes& add_u32(uint16_t type, uint32_t value, uint16_t claimed_length = 0) {
    char bytes[sizeof value];
    std::memcpy(bytes, &value, sizeof value);
    return add(type, bytes, claimed_length);
  }
  std::span<const char> span() const { return bytes_; }
  void truncate(size_t size) { bytes_.resize(size); }

 private:
  std::vector<char> bytes_;
};

std::vector<uint16_t> attribute_types(std::span<const char> attributes) {
  std::vector<uint16_t> seen;
  size_t offset = 0;
  while (const auto a = next_netlink_attribute(attributes, offset)) seen.push_back(a->type);
  return seen;
}

TEST(NetlinkMessagesTest, AttributesInOrderNestedOnesWithoutTheirFlag) {
  Attributes inner;
  inner.add_u32(2, 42).add(3, std::span<const char>("abc", 3));
  Attributes outer;
  outer.add(1, std::span<const char>("x", 1)).add(NLA_F_NESTED | 5, inner.span()).add_u32(7, 9);
  EXPECT_EQ(attribute_types(outer.span()), (std::vector<uint16_t>{1, 5, 7}));

  size_t offset = 0;
  std::optional<NetlinkAttribute> nested;
  while (const auto a = next_netlink_attribute(outer.span(), offset)) {
    if (a->type == 5) nested = a;
  }
  ASSERT_TRUE(nested.has_value());
  EXPECT_EQ(attribute_types(nested->value), (std::vector<uint16_t>{2, 3}));
  size_t inner_offset = 0;
  const auto first = next_netlink_attribute(nested->value, inner_offset);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->value.size(), sizeof(uint32_t));
  uint32_t value = 0;
  std::memcpy(&value, first->value.data(), sizeof value);
  EXPECT_EQ(value, 42u);
  EXPECT_TRUE(attribute_types({}).empty());
}

TEST(NetlinkMessagesTest, AnAttributeLengthThatLiesEndsTheWalk) {
  Attributes past_the_end;
  past_the_end.add_u32(1, 0).add_u32(2, 0, /*claimed_length=*/200);
  EXPECT_EQ(attribute_types(past_the_end.span()), std::vector<uint16_t>{1});

  Attributes shorter_than_a_header;
  shorter_than_a_header.add_u32(1, 0, /*claimed_length=*/2).add_u32(2, 0);
  EXPECT_TRUE(attribute_types(shorter_than_a_header.span()).empty())
      << "a zero-progress loop otherwise";

  Attributes cut;
  cut.add_u32(1, 0).add_u32(2, 0);
  cut.truncate(NLA_HDRLEN + sizeof(uint32_t) + NLA_HDRLEN - 1);
  EXPECT_EQ(attribute_types(cut.span()), std::vector<uint16_t>{1});

  // The last attribute's padding may be missing: alignment then passes the
  // end, which ends the walk without reading past it.
  Attributes unpadded;
  unpadded.add(1, std::span<const char>("ab", 2));
  unpadded.truncate(NLA_HDRLEN + 2);
  EXPECT_EQ(attribute_types(unpadded.span()), std::vector<uint16_t>{1});
}

TEST(NetlinkMessagesTest, AMessagesAttributesFollowItsPayload) {
  Datagram d;
  d.add(RTM_NEWTFILTER, sizeof(tcmsg) + 8).add(RTM_NEWTFILTER, sizeof(tcmsg));
  size_t offset = 0;
  const nlmsghdr* with = next_netlink_message(d.span(), offset);
  const nlmsghdr* without = next_netlink_message(d.span(), offset);
  ASSERT_NE(with, nullptr);
  ASSERT_NE(without, nullptr);
  const auto attributes = netlink_attributes<tcmsg>(*with);
  EXPECT_EQ(attributes.size(), 8u);
  EXPECT_EQ(static_cast<const void*>(attributes.data()),
            static_cast<const void*>(reinterpret_cast<const char*>(with) + NLMSG_HDRLEN +
                                     NLMSG_ALIGN(sizeof(tcmsg))));
  EXPECT_TRUE(netlink_attributes<tcmsg>(*without).empty());
}

// A message: the header, a zeroed Payload, then `attributes`.
template <typename Payload>
std::vector<char> message(uint16_t type, std::span<const char> attributes) {
  const size_t start = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(Payload));
  std::vector<char> bytes(start + attributes.size());
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(bytes.size());
  h.nlmsg_type = type;
  std::memcpy(bytes.data(), &h, sizeof h);
  if (!attributes.empty()) std::memcpy(bytes.data() + start, attributes.data(), attributes.size());
  return bytes;
}

std::vector<char> filter_message(std::span<const char> attributes) {
  return message<tcmsg>(RTM_NEWTFILTER, attributes);
}

const nlmsghdr& header_of(const std::vector<char>& message) {
  return *reinterpret_cast<const nlmsghdr*>(message.data());
}

uint32_t program_id_of(const std::vector<char>& message) {
  size_t offset = 0;
  const nlmsghdr* h = next_netlink_message(message, offset);
  return h != nullptr ? tc_filter_program_id(*h) : 0;
}

TEST(NetlinkMessagesTest, ABpfFiltersProgramIdIsReadFromItsOptions) {
  Attributes options;
  options.add(TCA_BPF_NAME, std::span<const char>("sebpf_tc_guard", 15)).add_u32(TCA_BPF_ID, 4242);
  Attributes bpf;
  bpf.add(TCA_KIND, std::span<const char>("bpf", 4))
      .add(NLA_F_NESTED | TCA_OPTIONS, options.span());
  EXPECT_EQ(program_id_of(filter_message(bpf.span())), 4242u);

  Attributes matchall;  // another kind: options without TCA_BPF_ID
  Attributes matchall_options;
  matchall_options.add_u32(TCA_MATCHALL_FLAGS, 0);
  matchall.add(TCA_KIND, std::span<const char>("matchall", 9))
      .add(NLA_F_NESTED | TCA_OPTIONS, matchall_options.span());
  EXPECT_EQ(program_id_of(filter_message(matchall.span())), 0u);
  EXPECT_EQ(program_id_of(filter_message({})), 0u);

  Attributes short_id;  // an id attribute too short to hold one
  Attributes short_options;
  short_options.add(TCA_BPF_ID, std::span<const char>("ab", 2));
  short_id.add(NLA_F_NESTED | TCA_OPTIONS, short_options.span());
  EXPECT_EQ(program_id_of(filter_message(short_id.span())), 0u);
}

// The kernel sends RTM_DELLINK both for a deleted link and for one moved
// to another namespace; only the move names the namespace it went to.
TEST(NetlinkMessagesTest, ALinkMovedToAnotherNamespaceIsToldFromADeletedOne) {
  Attributes moved;
  moved.add(IFLA_IFNAME, std::span<const char>("tap0", 5))
      .add_u32(IFLA_NEW_NETNSID, 3)
      .add_u32(IFLA_NEW_IFINDEX, 7);
  EXPECT_TRUE(
      link_moved_to_another_namespace(header_of(message<ifinfomsg>(RTM_DELLINK, moved.span()))));

  Attributes deleted;
  deleted.add(IFLA_IFNAME, std::span<const char>("tap0", 5)).add_u32(IFLA_MTU, 1500);
  EXPECT_FALSE(
      link_moved_to_another_namespace(header_of(message<ifinfomsg>(RTM_DELLINK, deleted.span()))));
  EXPECT_FALSE(link_moved_to_another_namespace(header_of(message<ifinfomsg>(RTM_DELLINK, {}))));
}

}  // namespace
}  // namespace sebpf
