// Whether a Unix socket is the one whose file is at a path now. The path a
// socket was bound to (getsockname) says nothing of that: once its file is
// removed, another socket may be bound there, and a connect() to the path
// reaches that one. A socket systemd kept across a restart, or one a
// reload hands over, is served only if connections to the path reach it.
#pragma once

#include <string>

#include "common/result.h"

namespace sebpf::daemon {

// Asks the kernel (sock_diag, UNIX_DIAG_VFS) which file `fd`'s socket is
// bound to and compares it with the file at `path`: false if the file is
// gone, is not a socket, or is another socket's. An error if the kernel
// cannot tell (no unix_diag).
Result<bool> owns_socket_file(int fd, const std::string& path);

}  // namespace sebpf::daemon
