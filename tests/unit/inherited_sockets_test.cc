// The DNS endpoint sockets a reloading daemon hands to its replacement:
// which one serves which endpoint.
#include "dns/inherited_sockets.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace sebpf::dns {
namespace {

// A socket of `type` bound to 127.0.0.1 on a port the kernel picks.
UniqueFd loopback_socket(int type, bool listening = true) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  if (type == SOCK_STREAM && listening) {
    EXPECT_EQ(listen(fd.get(), 4), 0);
  }
  return fd;
}

TEST(InheritedSocketsTest, EachSocketServesOnlyTheEndpointOfItsNamespaceTypeAddressAndDevice) {
  UniqueFd udp = loopback_socket(SOCK_DGRAM);
  UniqueFd tcp = loopback_socket(SOCK_STREAM);
  auto udp_id = identify_socket(udp.get());
  auto tcp_id = identify_socket(tcp.get());
  ASSERT_TRUE(udp_id.ok()) << udp_id.error().message();
  ASSERT_TRUE(tcp_id.ok()) << tcp_id.error().message();
  EXPECT_EQ(udp_id->type, SOCK_DGRAM);
  EXPECT_EQ(udp_id->address.to_string().rfind("127.0.0.1:", 0), 0u) << udp_id->address.to_string();
  EXPECT_EQ(udp_id->device_ifindex, 0u);
  EXPECT_EQ(udp_id->netns_cookie, *current_netns_cookie());

  std::vector<std::string> rejected;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(udp));
  fds.push_back(std::move(tcp));
  InheritedSockets inherited(std::move(fds), rejected);
  EXPECT_TRUE(rejected.empty());
  ASSERT_EQ(inherited.size(), 2u);

  SocketIdentity other = *udp_id;
  other.type = SOCK_STREAM;
  other.address = *net::SocketAddress::parse("127.0.0.1", udp_id->address.port() ^ 1);
  EXPECT_FALSE(inherited.take(other).valid()) << "another port";
  other = *udp_id;
  other.netns_cookie ^= 1;
  EXPECT_FALSE(inherited.take(other).valid()) << "another network namespace";
  other = *udp_id;
  other.device_ifindex = 1;
  EXPECT_FALSE(inherited.take(other).valid()) << "bound to a device";

  EXPECT_TRUE(inherited.take(*udp_id).valid());
  EXPECT_FALSE(inherited.take(*udp_id).valid()) << "taken once";
  EXPECT_EQ(inherited.close_unclaimed(), 1u) << "the listener nobody took";
  EXPECT_FALSE(inherited.take(*tcp_id).valid());
}

TEST(InheritedSocketsTest, DescriptorsThatAreNoEndpointsSocketAreLeftOutWithTheReason) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd write_end(pipe_fds[1]);
  UniqueFd unix_socket(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  std::vector<UniqueFd> fds;
  fds.emplace_back(pipe_fds[0]);
  fds.push_back(loopback_socket(SOCK_STREAM, /*listening=*/false));
  fds.emplace_back(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));  // never bound
  fds.push_back(std::move(unix_socket));
  std::vector<std::string> rejected;
  InheritedSockets inherited(std::move(fds), rejected);
  EXPECT_EQ(inherited.size(), 0u);
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_NE(rejected[0].find("type"), std::string::npos) << rejected[0];
  EXPECT_NE(rejected[1].find("does not listen"), std::string::npos) << rejected[1];
  EXPECT_NE(rejected[2].find("not bound"), std::string::npos) << rejected[2];
  EXPECT_NE(rejected[3].find("neither IPv4 nor IPv6"), std::string::npos) << rejected[3];
}

}  // namespace
}  // namespace sebpf::dns
