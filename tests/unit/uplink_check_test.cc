#include "daemon/uplink_check.h"

#include <gtest/gtest.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace sebpf::daemon {
namespace {

// A route dump's message as the kernel writes it: header, rtmsg, then
// attributes, each padded to 4 bytes.
class RouteMessage {
 public:
  RouteMessage(unsigned char dst_len, unsigned char type = RTN_UNICAST,
               unsigned char table = RT_TABLE_MAIN) {
    rtmsg route{};
    route.rtm_family = AF_INET;
    route.rtm_dst_len = dst_len;
    route.rtm_type = type;
    route.rtm_table = table;
    append(&route, sizeof route);
  }
  RouteMessage& oif(uint32_t ifindex) { return attribute(RTA_OIF, &ifindex, sizeof ifindex); }
  RouteMessage& next_hops(const std::vector<int>& ifindexes) {
    std::vector<char> hops;
    for (const int ifindex : ifindexes) {
      rtnexthop hop{};
      hop.rtnh_len = sizeof hop;
      hop.rtnh_ifindex = ifindex;
      const auto* bytes = reinterpret_cast<const char*>(&hop);
      hops.insert(hops.end(), bytes, bytes + sizeof hop);
    }
    return attribute(RTA_MULTIPATH, hops.data(), hops.size());
  }
  // The message, its length in the header as given (or the true one).
  const nlmsghdr& get(uint32_t claimed_length = 0) {
    nlmsghdr header{};
    header.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + body_.size());
    if (claimed_length != 0) header.nlmsg_len = claimed_length;
    header.nlmsg_type = RTM_NEWROUTE;
    storage_.assign((NLMSG_HDRLEN + body_.size() + 3) / 4, 0);
    std::memcpy(storage_.data(), &header, sizeof header);
    std::memcpy(reinterpret_cast<char*>(storage_.data()) + NLMSG_HDRLEN, body_.data(),
                body_.size());
    return *reinterpret_cast<const nlmsghdr*>(storage_.data());
  }

  RouteMessage& raw_attribute(unsigned short type, const void* value, size_t size) {
    return attribute(type, value, size);
  }

 private:
  RouteMessage& attribute(unsigned short type, const void* value, size_t size) {
    rtattr header{};
    header.rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
    header.rta_type = type;
    append(&header, sizeof header);
    append(value, size);
    return *this;
  }
  void append(const void* bytes, size_t size) {
    const auto* b = static_cast<const char*>(bytes);
    body_.insert(body_.end(), b, b + size);
    body_.resize((body_.size() + 3) / 4 * 4, 0);
  }
  std::vector<char> body_;
  std::vector<uint32_t> storage_;  // 4-byte aligned, as netlink messages are
};

bool through(const nlmsghdr& message, unsigned ifindex) {
  const std::vector<unsigned> all = default_route_interfaces(message);
  return std::find(all.begin(), all.end(), ifindex) != all.end();
}

TEST(UplinkCheckTest, ADefaultRouteThroughTheInterfaceMakesItAnUplink) {
  EXPECT_TRUE(through(RouteMessage(0).oif(7).get(), 7));
  EXPECT_TRUE(through(RouteMessage(0).next_hops({3, 7}).get(), 7)) << "one of several next hops";
}

TEST(UplinkCheckTest, OtherRoutesDoNot) {
  EXPECT_FALSE(through(RouteMessage(0).oif(8).get(), 7)) << "another interface";
  EXPECT_FALSE(through(RouteMessage(0).next_hops({3, 8}).get(), 7));
  EXPECT_FALSE(through(RouteMessage(24).oif(7).get(), 7)) << "not a default";
  EXPECT_FALSE(through(RouteMessage(0, RTN_UNREACHABLE).oif(7).get(), 7))
      << "the reject default the kernel keeps on lo";
  EXPECT_FALSE(through(RouteMessage(0, RTN_UNICAST, 100).oif(7).get(), 7)) << "another table";
  EXPECT_FALSE(through(RouteMessage(0).get(), 7)) << "no next hop at all";
}

TEST(UplinkCheckTest, LengthsThatLieAreNotBelieved) {
  RouteMessage cut(0);
  cut.oif(7);
  // The header claims less than the attribute it holds.
  EXPECT_FALSE(through(cut.get(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(rtmsg)) + 6), 7));
  EXPECT_FALSE(through(cut.get(NLMSG_HDRLEN + 4), 7)) << "shorter than an rtmsg";
  // A last attribute of odd length, the message not padded after it: its
  // padding would take the walk past the end.
  RouteMessage odd(0);
  const uint8_t one = 1;
  odd.raw_attribute(RTA_PRIORITY, &one, 1);
  EXPECT_FALSE(through(odd.get(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(rtmsg)) + RTA_LENGTH(1)), 7));
}

}  // namespace
}  // namespace sebpf::daemon
