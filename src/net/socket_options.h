// A socket's integer options (SO_TYPE, SO_ACCEPTCONN, SO_BINDTOIFINDEX...)
// read with their error: what the sockets handed over at a reload are
// checked with, on the DNS and on the API side.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <string_view>

#include "common/result.h"

namespace sebpf::net {

// The option's value; `what` names the reading in the error.
inline Result<int> int_socket_option(int fd, int name, std::string_view what) {
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, name, &value, &len) != 0) return Error::from_errno(errno, what);
  return value;
}

}  // namespace sebpf::net
