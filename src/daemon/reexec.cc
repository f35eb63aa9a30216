#include "daemon/reexec.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <span>

extern char** environ;

namespace sebpf::daemon {
namespace {

// The open descriptors `variable` lists, close-on-exec from now on, and
// the variable removed; problems go to `problems`.
std::vector<UniqueFd> take_descriptors(const char* variable, std::vector<std::string>& problems) {
  std::vector<UniqueFd> fds;
  const char* text = std::getenv(variable);
  if (text == nullptr) return fds;
  auto numbers = parse_descriptor_list(variable, text);
  unsetenv(variable);  // not passed on to anything this process starts
  if (!numbers.ok()) {
    problems.push_back(numbers.error().message());
    return fds;
  }
  for (const int fd : *numbers) {
    const int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
      problems.push_back(std::string(variable) + ": descriptor " + std::to_string(fd) + ": " +
                         errno_text(errno));
      continue;
    }
    (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    fds.emplace_back(fd);
  }
  return fds;
}

// `fds` listed for `variable`, each kept open across execve.
Result<std::string> hand_over(const char* variable, std::span<const UniqueFd> fds) {
  std::string list;
  for (const UniqueFd& fd : fds) {
    const int flags = fcntl(fd.get(), F_GETFD);
    if (flags < 0 || fcntl(fd.get(), F_SETFD, flags & ~FD_CLOEXEC) != 0) {
      return Error::from_errno(errno, "keep a socket open across execve");
    }
    list += (list.empty() ? "" : ",") + std::to_string(fd.get());
  }
  return std::string(variable) + "=" + list;
}

}  // namespace

Result<std::vector<int>> parse_descriptor_list(std::string_view variable, std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return Error(Errc::kInvalidArgument,
                 std::string(variable) + "=\"" + std::string(text) + "\": " + why);
  };
  std::vector<int> fds;
  if (text.empty()) return fds;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    int fd = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), fd);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return bad("\"" + std::string(item) + "\" is not a descriptor number");
    }
    if (fd <= STDERR_FILENO) {
      return bad("descriptor " + std::to_string(fd) + " is standard input, output or error");
    }
    if (std::find(fds.begin(), fds.end(), fd) != fds.end()) {
      return bad("descriptor " + std::to_string(fd) + " is listed twice");
    }
    fds.push_back(fd);
    start = comma + 1;
  }
  return fds;
}

Result<std::string> own_executable() {
  char path[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0) return Error::from_errno(errno, "read /proc/self/exe");
  return std::string(path, static_cast<size_t>(n));
}

HandedOver take_handed_over(std::vector<std::string>& problems) {
  HandedOver out;
  std::vector<UniqueFd> api = take_descriptors(kHandedOverApiVariable, problems);
  if (api.size() > 1) {
    problems.push_back(std::string(kHandedOverApiVariable) + ": more than one descriptor");
  } else if (api.size() == 1) {
    out.api_listener.fd = std::move(api.front());
  }
  const char* from_systemd = std::getenv(kApiSocketFromSystemdVariable);
  out.api_listener.from_systemd =
      out.api_listener.fd && from_systemd != nullptr && std::string_view(from_systemd) == "1";
  unsetenv(kApiSocketFromSystemdVariable);
  std::vector<UniqueFd> dns = take_descriptors(kHandedOverDnsVariable, problems);
  if (!dns.empty()) out.dns = std::make_unique<dns::InheritedSockets>(std::move(dns), problems);
  return out;
}

Error reexec(const std::string& executable, char** argv, HandOver sockets) {
  std::vector<std::string> variables;
  if (sockets.api_listener.fd) {
    auto api = hand_over(kHandedOverApiVariable, std::span(&sockets.api_listener.fd, 1));
    if (!api.ok()) return api.error();
    variables.push_back(std::move(*api));
    if (sockets.api_listener.from_systemd) {
      variables.push_back(std::string(kApiSocketFromSystemdVariable) + "=1");
    }
  }
  if (!sockets.dns_sockets.empty()) {
    auto dns = hand_over(kHandedOverDnsVariable, sockets.dns_sockets);
    if (!dns.ok()) return dns.error();
    variables.push_back(std::move(*dns));
  }
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const bool ours = entry.starts_with(std::string(kHandedOverApiVariable) + "=") ||
                      entry.starts_with(std::string(kHandedOverDnsVariable) + "=") ||
                      entry.starts_with(std::string(kApiSocketFromSystemdVariable) + "=");
    if (!ours) env.push_back(*e);
  }
  for (std::string& v : variables) env.push_back(v.data());
  env.push_back(nullptr);
  execve(executable.c_str(), argv, env.data());
  return Error::from_errno(errno, "execve " + executable);
}

}  // namespace sebpf::daemon
