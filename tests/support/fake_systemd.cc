#include "support/fake_systemd.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string_view>

#include "support/sockets.h"

namespace sebpf::testing {

namespace {

// The value of `key` in a notify message ("KEY=value" lines); empty if absent.
std::string field(std::string_view message, std::string_view key) {
  size_t at = 0;
  while (at < message.size()) {
    const size_t end = std::min(message.find('\n', at), message.size());
    const std::string_view line = message.substr(at, end - at);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == '=') {
      return std::string(line.substr(key.size() + 1));
    }
    at = end + 1;
  }
  return "";
}

}  // namespace

FakeSystemd::FakeSystemd(const std::string& dir) : path_(dir + "/notify.sock") {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const auto addr = unix_address(path_);
  if (!fd || !addr ||
      bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    return;
  }
  notify_ = std::move(fd);
}

void FakeSystemd::add_socket_unit(UniqueFd fd, std::string name) {
  socket_units_.emplace_back(std::move(name), std::move(fd));
}

bool FakeSystemd::listen_stream(const std::string& path, std::string name) {
  UniqueFd fd = unix_listener(path);
  if (!fd) return false;
  add_socket_unit(std::move(fd), std::move(name));
  return true;
}

bool FakeSystemd::receive(std::chrono::milliseconds timeout) {
  pollfd p{notify_.get(), POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  std::array<char, 4096> text{};
  iovec iov{text.data(), text.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 253)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  const ssize_t n = recvmsg(notify_.get(), &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return false;
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  const std::string message(text.data(), static_cast<size_t>(n));
  const std::string name = field(message, "FDNAME");
  if (field(message, "FDSTOREREMOVE") == "1") {
    store_.erase(name);
  } else if (field(message, "FDSTORE") == "1") {
    for (UniqueFd& fd : fds) store_[name].push_back(std::move(fd));
  } else {
    messages_.push_back(message);
  }
  return true;
}

std::string FakeSystemd::next_message(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (messages_.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !receive(left)) return "(none)";
  }
  std::string message = std::move(messages_.front());
  messages_.pop_front();
  return message;
}

void FakeSystemd::take_in() {
  while (receive(std::chrono::milliseconds(0))) {
  }
}

std::map<std::string, size_t> FakeSystemd::stored() const {
  std::map<std::string, size_t> counts;
  for (const auto& [name, fds] : store_) counts[name] = fds.size();
  return counts;
}

std::vector<FakeSystemd::Passed> FakeSystemd::passed() const {
  std::vector<Passed> out;
  for (const auto& [name, fd] : socket_units_) out.push_back({fd.get(), name});
  for (const auto& [name, fds] : store_) {
    for (const UniqueFd& fd : fds) out.push_back({fd.get(), name});
  }
  return out;
}

}  // namespace sebpf::testing
