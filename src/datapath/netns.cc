#include "datapath/netns.h"

#include <sys/socket.h>

#include "common/in_namespace.h"
#include "common/unique_fd.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; older libc headers lack it
#endif

namespace sebpf::datapath {

Result<uint64_t> netns_cookie(int netns_fd) {
  const auto read = []() -> Result<uint64_t> {
    UniqueFd probe(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!probe) return Error::from_errno(errno, "open a socket to read its namespace's cookie");
    uint64_t cookie = 0;
    socklen_t length = sizeof cookie;
    if (getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) != 0) {
      return Error::from_errno(errno, "read the network namespace's cookie (SO_NETNS_COOKIE)");
    }
    return cookie;
  };
  return in_namespace<Result<uint64_t>>(netns_fd, CLONE_NEWNET, "the network namespace", read);
}

}  // namespace sebpf::datapath
