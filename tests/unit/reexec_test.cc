// What a reloading daemon passes to the process that replaces it: the
// descriptor lists in the environment, read back by the new process.
#include "daemon/reexec.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace sebpf::daemon {
namespace {

TEST(ReexecTest, ADescriptorListIsNumbersAndNothingElse) {
  EXPECT_EQ(*parse_descriptor_list("V", "3,4,10"), (std::vector<int>{3, 4, 10}));
  EXPECT_TRUE(parse_descriptor_list("V", "")->empty());
  for (const char* bad :
       {"3,,4", "3,", ",3", "x", "3;4", "3 ,4", "1", "0", "-4", "3,3", "99999999999"}) {
    auto parsed = parse_descriptor_list(kHandedOverDnsVariable, bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message().find(kHandedOverDnsVariable), std::string::npos)
        << parsed.error().message();
  }
}

// The new process takes what the variables list, and says what it could
// not: a descriptor that is not open, one that is no endpoint's socket, a
// malformed list. The variables are gone afterwards.
TEST(ReexecTest, WhatWasHandedOverIsTakenAndWhatIsWrongIsNamed) {
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(udp.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  UniqueFd api(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]);
  const int closed = pipe_fds[1];
  close(closed);                     // nothing opened after this may take its number
  const int udp_fd = udp.release();  // taken by take_handed_over
  const int pipe_fd = read_end.release();
  const int api_fd = api.release();

  setenv(kHandedOverApiVariable, std::to_string(api_fd).c_str(), 1);
  setenv(kHandedOverDnsVariable,
         (std::to_string(udp_fd) + "," + std::to_string(pipe_fd) + "," + std::to_string(closed))
             .c_str(),
         1);
  std::vector<std::string> problems;
  HandedOver taken = take_handed_over(problems);
  EXPECT_EQ(std::getenv(kHandedOverApiVariable), nullptr);
  EXPECT_EQ(std::getenv(kHandedOverDnsVariable), nullptr);
  EXPECT_EQ(taken.api_listener.fd.get(), api_fd);
  EXPECT_FALSE(taken.api_listener.from_systemd);
  EXPECT_NE(fcntl(api_fd, F_GETFD) & FD_CLOEXEC, 0) << "not passed on to a child";
  ASSERT_NE(taken.dns, nullptr);
  EXPECT_EQ(taken.dns->size(), 1u) << "the UDP socket";
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("descriptor " + std::to_string(closed)), std::string::npos)
      << problems[0];
  EXPECT_NE(problems[1].find("descriptor " + std::to_string(pipe_fd)), std::string::npos)
      << problems[1];
  EXPECT_EQ(fcntl(pipe_fd, F_GETFD), -1) << "what no endpoint can serve is closed";

  setenv(kHandedOverDnsVariable, "3,x", 1);
  problems.clear();
  taken = take_handed_over(problems);
  EXPECT_EQ(taken.dns, nullptr);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("is not a descriptor number"), std::string::npos) << problems[0];
  EXPECT_EQ(std::getenv(kHandedOverDnsVariable), nullptr);
}

// An API socket systemd made stays systemd's after a reload, so that the
// new process's stop leaves its file (the socket unit still listens there).
TEST(ReexecTest, AnApiSocketFromSystemdIsStillSystemdsAfterTheReload) {
  UniqueFd api(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int api_fd = api.release();
  setenv(kHandedOverApiVariable, std::to_string(api_fd).c_str(), 1);
  setenv(kApiSocketFromSystemdVariable, "1", 1);
  std::vector<std::string> problems;
  HandedOver taken = take_handed_over(problems);
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(taken.api_listener.fd.get(), api_fd);
  EXPECT_TRUE(taken.api_listener.from_systemd);
  EXPECT_EQ(std::getenv(kApiSocketFromSystemdVariable), nullptr);

  // Without a socket it means nothing.
  setenv(kApiSocketFromSystemdVariable, "1", 1);
  taken = take_handed_over(problems);
  EXPECT_FALSE(taken.api_listener.fd);
  EXPECT_FALSE(taken.api_listener.from_systemd);
  EXPECT_EQ(std::getenv(kApiSocketFromSystemdVariable), nullptr);
}

}  // namespace
}  // namespace sebpf::daemon
