// What systemd passes a starting daemon (LISTEN_FDS, LISTEN_FDNAMES): each
// socket goes where its name and kind say, and what fits nowhere is closed
// and named. Run in a child: the passed descriptors must sit at 3, 4, ...
#include "daemon/socket_activation.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "support/process.h"

namespace sebpf::daemon {
namespace {

UniqueFd listening_unix() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // An address of the family alone: the kernel picks an abstract one, and
  // no file is made.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd && (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)) != 0 ||
             listen(fd.get(), 1) != 0)) {
    fd.reset();
  }
  return fd;
}

TEST(SocketActivationTest, EachPassedSocketGoesWhereItsNameAndKindSay) {
  const int rc =
      testing::Child([] {
        UniqueFd dns_udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        UniqueFd api = listening_unix();
        UniqueFd second_api = listening_unix();
        UniqueFd datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!dns_udp || !api || !second_api || !datagram) return 10;
        // Above the numbers they go to, then to 3, 4, 5, 6 as systemd puts them.
        const int sources[] = {fcntl(dns_udp.get(), F_DUPFD, 20), fcntl(api.get(), F_DUPFD, 20),
                               fcntl(second_api.get(), F_DUPFD, 20),
                               fcntl(datagram.get(), F_DUPFD, 20)};
        for (int i = 0; i < 4; ++i) {
          if (dup2(sources[i], 3 + i) != 3 + i) return 11;
        }
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        setenv("LISTEN_FDS", "4", 1);
        setenv("LISTEN_FDNAMES", "dns-7:api:superebpfd.socket:other", 1);
        std::vector<std::string> problems;
        SystemdSockets taken = take_systemd_sockets(problems);
        if (taken.dns.size() != 1 || taken.dns[0].get() != 3) return 20;
        if (taken.api_listener.get() != 4) return 21;
        if ((fcntl(4, F_GETFD) & FD_CLOEXEC) == 0) return 22;  // not passed on to children
        if (fcntl(5, F_GETFD) != -1 || fcntl(6, F_GETFD) != -1) return 23;  // closed
        if (problems.size() != 2) return 24;
        if (problems[0].find("only one socket is the API's") == std::string::npos) return 25;
        if (problems[1].find("not a listening Unix stream socket") == std::string::npos) return 26;
        // The store may hold the endpoint's for nothing, and holds the closed
        // ones for nothing; the API's is in use.
        if (taken.names_to_check !=
            std::vector<std::string>{"dns-7", "superebpfd.socket", "other"}) {
          return 27;
        }
        if (std::getenv("LISTEN_FDS") != nullptr || std::getenv("LISTEN_FDNAMES") != nullptr) {
          return 28;
        }
        return 0;
      }).wait();
  EXPECT_EQ(rc, 0) << "see the return codes in the child";
}

TEST(SocketActivationTest, NothingPassedIsNothingTaken) {
  unsetenv("LISTEN_FDS");
  std::vector<std::string> problems;
  SystemdSockets taken = take_systemd_sockets(problems);
  EXPECT_FALSE(taken.api_listener);
  EXPECT_TRUE(taken.dns.empty());
  EXPECT_TRUE(problems.empty());
}

}  // namespace
}  // namespace sebpf::daemon
