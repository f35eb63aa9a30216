#include "daemon/reexec.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace sebpf::daemon {

Result<std::string> own_executable() {
  char path[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0) return Error::from_errno(errno, "read /proc/self/exe");
  return std::string(path, static_cast<size_t>(n));
}

Result<std::unique_ptr<dns::InheritedSockets>> take_handed_over_sockets(
    std::vector<std::string>& rejected) {
  const char* text = std::getenv(dns::kHandedOverSocketsVariable);
  if (text == nullptr) return std::unique_ptr<dns::InheritedSockets>();
  auto numbers = dns::parse_descriptor_list(text);
  // Not passed on to anything this process starts.
  unsetenv(dns::kHandedOverSocketsVariable);
  if (!numbers.ok()) return numbers.error();
  std::vector<UniqueFd> fds;
  for (const int fd : *numbers) {
    const int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
      rejected.push_back("descriptor " + std::to_string(fd) + ": " + errno_text(errno));
      continue;
    }
    (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    fds.emplace_back(fd);
  }
  return std::make_unique<dns::InheritedSockets>(std::move(fds), rejected);
}

Error reexec(const std::string& executable, char** argv, std::vector<UniqueFd> sockets) {
  std::string list;
  for (const UniqueFd& fd : sockets) {
    const int flags = fcntl(fd.get(), F_GETFD);
    if (flags < 0 || fcntl(fd.get(), F_SETFD, flags & ~FD_CLOEXEC) != 0) {
      return Error::from_errno(errno, "keep a DNS endpoint socket open across execve");
    }
    list += (list.empty() ? "" : ",") + std::to_string(fd.get());
  }
  const std::string variable = std::string(dns::kHandedOverSocketsVariable) + "=" + list;
  const std::string prefix = std::string(dns::kHandedOverSocketsVariable) + "=";
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) env.push_back(*e);
  }
  if (!sockets.empty()) env.push_back(const_cast<char*>(variable.c_str()));
  env.push_back(nullptr);
  execve(executable.c_str(), argv, env.data());
  return Error::from_errno(errno, "execve " + executable);
}

}  // namespace sebpf::daemon
