#include "common/netlink_messages.h"

#include <gtest/gtest.h>
#include <linux/rtnetlink.h>

#include <cstring>
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

}  // namespace
}  // namespace sebpf
