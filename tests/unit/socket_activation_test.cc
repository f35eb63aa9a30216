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
#include "support/sockets.h"
#include "support/test_dir.h"

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
        SystemdSockets taken = take_systemd_sockets("/run/none/api.sock", problems);
        if (taken.dns.size() != 1 || taken.dns[0].get() != 3) return 20;
        if (taken.api_listener.get() != 4) return 21;
        if ((fcntl(4, F_GETFD) & FD_CLOEXEC) == 0) return 22;  // not passed on to children
        if (fcntl(5, F_GETFD) != -1 || fcntl(6, F_GETFD) != -1) return 23;  // closed
        if (problems.size() != 2) return 24;
        if (problems[0].find("not a listening Unix stream socket") == std::string::npos) return 25;
        // None has its file at the path: the first is served.
        if (problems[1].find("only one is the API's: closed (none has its file at") ==
            std::string::npos)
          return 26;
        // The store may hold the endpoint's for nothing, and holds the closed
        // ones for nothing; the API's is in use.
        if (taken.names_to_check !=
            std::vector<std::string>{"dns-7", "other", "superebpfd.socket"}) {
          return 27;
        }
        if (std::getenv("LISTEN_FDS") != nullptr || std::getenv("LISTEN_FDNAMES") != nullptr) {
          return 28;
        }
        return 0;
      }).wait();
  EXPECT_EQ(rc, 0) << "see the return codes in the child";
}

// A socket unit's socket whose file was removed, and the socket the daemon
// bound in its place, which the store kept: the one a connect() to the
// path reaches is served, wherever it comes in the order.
TEST(SocketActivationTest, OfTwoApiSocketsTheOneWhoseFileIsAtThePathIsServed) {
  const testing::TestDir dir("sebpf-activation");
  ASSERT_TRUE(dir.made());
  const std::string path = dir.path() + "/api.sock";
  const int rc =
      testing::Child([&] {
        UniqueFd stale = testing::unix_listener(path);
        if (!stale || unlink(path.c_str()) != 0) return 10;
        UniqueFd stored = testing::unix_listener(path);
        if (!stored) return 11;
        // Above the numbers they go to, then to 3 and 4 as systemd puts them.
        const int sources[] = {fcntl(stale.get(), F_DUPFD, 20), fcntl(stored.get(), F_DUPFD, 20)};
        stale.reset();
        stored.reset();
        if (dup2(sources[0], 3) != 3 || dup2(sources[1], 4) != 4) return 12;
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        setenv("LISTEN_FDS", "2", 1);
        setenv("LISTEN_FDNAMES", "superebpfd.socket:api", 1);
        std::vector<std::string> problems;
        SystemdSockets taken = take_systemd_sockets(path, problems);
        if (taken.api_listener.get() != 4) return 20;
        if (fcntl(3, F_GETFD) != -1) return 21;  // closed
        if (problems.size() != 1 ||
            problems[0].find("whose file is at " + path) == std::string::npos) {
          return 22;
        }
        // The socket unit's may not be in the store; the stored one stays.
        if (taken.names_to_check != std::vector<std::string>{"superebpfd.socket"}) return 23;
        return 0;
      }).wait();
  EXPECT_EQ(rc, 0) << "see the return codes in the child";
}

TEST(SocketActivationTest, NothingPassedIsNothingTaken) {
  unsetenv("LISTEN_FDS");
  std::vector<std::string> problems;
  SystemdSockets taken = take_systemd_sockets("/run/none/api.sock", problems);
  EXPECT_FALSE(taken.api_listener);
  EXPECT_TRUE(taken.dns.empty());
  EXPECT_TRUE(problems.empty());
}

}  // namespace
}  // namespace sebpf::daemon
