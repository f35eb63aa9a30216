#include "daemon/unix_socket_file.h"

#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <span>

#include "common/netlink_messages.h"
#include "common/unique_fd.h"

namespace sebpf::daemon {

namespace {

struct VfsFile {
  unsigned major;
  unsigned minor;
  uint64_t inode;
};

// The file the socket of sockfs inode `socket_inode` is bound to; nullopt
// for one bound to none (an abstract or unbound socket).
Result<std::optional<VfsFile>> bound_file(uint64_t socket_inode) {
  UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return Error::from_errno(errno, "open a sock_diag socket");
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } ask{};
  ask.header.nlmsg_len = sizeof ask;
  ask.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  ask.header.nlmsg_flags = NLM_F_REQUEST;
  ask.request.sdiag_family = AF_UNIX;
  ask.request.udiag_states = ~0U;
  ask.request.udiag_ino = static_cast<uint32_t>(socket_inode);
  ask.request.udiag_show = UDIAG_SHOW_VFS;
  ask.request.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  ask.request.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (send(nl.get(), &ask, sizeof ask, 0) < 0) return Error::from_errno(errno, "ask sock_diag");
  alignas(nlmsghdr) char buf[1024];
  const ssize_t n = recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) return Error::from_errno(errno, "read sock_diag's answer");
  size_t offset = 0;
  const nlmsghdr* answer = next_netlink_message({buf, static_cast<size_t>(n)}, offset);
  if (answer == nullptr) return Error(Errc::kInternal, "sock_diag: a truncated answer");
  if (answer->nlmsg_type == NLMSG_ERROR) {
    const nlmsgerr* error = netlink_payload<nlmsgerr>(*answer);
    return Error::from_errno(error != nullptr ? -error->error : EPROTO, "sock_diag (unix_diag)");
  }
  if (answer->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
      netlink_payload<unix_diag_msg>(*answer) == nullptr) {
    return Error(Errc::kInternal, "sock_diag: an unexpected answer");
  }
  const std::span<const char> attributes = netlink_attributes<unix_diag_msg>(*answer);
  size_t at = 0;
  while (const auto attribute = next_netlink_attribute(attributes, at)) {
    if (attribute->type != UNIX_DIAG_VFS || attribute->value.size() < sizeof(unix_diag_vfs)) {
      continue;
    }
    unix_diag_vfs vfs;
    std::memcpy(&vfs, attribute->value.data(), sizeof vfs);
    // The kernel's own dev_t: 12 bits of major above 20 of minor.
    return std::optional<VfsFile>(
        VfsFile{vfs.udiag_vfs_dev >> 20, vfs.udiag_vfs_dev & 0xfffff, vfs.udiag_vfs_ino});
  }
  return std::optional<VfsFile>();
}

}  // namespace

Result<bool> owns_socket_file(int fd, const std::string& path) {
  struct stat file {};
  if (lstat(path.c_str(), &file) != 0 || !S_ISSOCK(file.st_mode)) return false;
  struct stat sock {};
  if (fstat(fd, &sock) != 0) return Error::from_errno(errno, "fstat the socket");
  SEBPF_ASSIGN_OR_RETURN(const std::optional<VfsFile> bound, bound_file(sock.st_ino));
  return bound && bound->inode == file.st_ino && bound->major == major(file.st_dev) &&
         bound->minor == minor(file.st_dev);
}

}  // namespace sebpf::daemon
