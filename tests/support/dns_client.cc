#include "support/dns_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sebpf::testing {

std::vector<uint8_t> wire_name(std::string_view dotted) {
  std::vector<uint8_t> out;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string_view::npos) dot = dotted.size();
    out.push_back(static_cast<uint8_t>(dot - start));
    out.insert(out.end(), dotted.begin() + static_cast<long>(start),
               dotted.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  return out;
}

std::vector<uint8_t> make_query(const std::string& name, uint16_t type, uint16_t id,
                                uint16_t udp_size) {
  std::vector<uint8_t> q = {static_cast<uint8_t>(id >> 8),
                            static_cast<uint8_t>(id),
                            0x01,
                            0x00,
                            0,
                            1,
                            0,
                            0,
                            0,
                            0,
                            0,
                            static_cast<uint8_t>(udp_size ? 1 : 0)};
  const std::vector<uint8_t> labels = wire_name(name);
  q.insert(q.end(), labels.begin(), labels.end());
  q.insert(q.end(), {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type), 0, 1});
  if (udp_size) {
    q.insert(q.end(), {0, 0, 41, static_cast<uint8_t>(udp_size >> 8),
                       static_cast<uint8_t>(udp_size), 0, 0, 0, 0, 0, 0});
  }
  return q;
}

namespace {

// Waits for `fd` to be readable; false on timeout.
bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
}

Error sys_error(const std::string& what) {
  return Error(Errc::kInternal, what + ": " + std::strerror(errno));
}

Status connect_to(int fd, const net::SocketAddress& server) {
  sockaddr_storage ss;
  const socklen_t len = server.to_sockaddr(ss);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return sys_error("connect");
  return ok_status();
}

}  // namespace

Result<DnsAnswer> dns_query(const net::SocketAddress& server, const std::vector<uint8_t>& query,
                            bool tcp, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  UniqueFd fd(::socket(server.family(), (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("socket");
  // A TCP connect whose SYN is dropped gives up within the timeout, not
  // after the kernel's two minutes of retries.
  const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(timeout);
  const timeval limit{static_cast<time_t>(whole.count() / 1000000),
                      static_cast<suseconds_t>(whole.count() % 1000000)};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  SEBPF_RETURN_IF_ERROR(connect_to(fd.get(), server));
  std::vector<uint8_t> out;
  if (tcp) out = {static_cast<uint8_t>(query.size() >> 8), static_cast<uint8_t>(query.size())};
  out.insert(out.end(), query.begin(), query.end());
  if (::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
    return sys_error("send");
  }
  std::vector<uint8_t> in;
  while (true) {
    if (!wait_readable(fd.get(), deadline)) {
      return Error(Errc::kUnavailable, "no answer from " + server.to_string());
    }
    uint8_t buf[65536];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) return sys_error("recv");
    if (n == 0) return Error(Errc::kUnavailable, server.to_string() + " closed the connection");
    in.insert(in.end(), buf, buf + n);
    if (!tcp) break;
    if (in.size() >= 2 && in.size() >= 2u + (in[0] << 8 | in[1])) {
      in = std::vector<uint8_t>(in.begin() + 2, in.begin() + 2 + (in[0] << 8 | in[1]));
      break;
    }
  }
  SEBPF_ASSIGN_OR_RETURN(dns::Message message, dns::parse_message(in));
  return DnsAnswer{std::move(in), std::move(message)};
}

Result<DnsAnswer> dns_query(const net::SocketAddress& server, const std::string& name,
                            uint16_t type, bool tcp) {
  return dns_query(server, make_query(name, type), tcp);
}

Result<DnsUdpBurst> DnsUdpBurst::connect(const net::SocketAddress& server, int room) {
  UniqueFd fd(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("socket");
  const int bytes = room * 1024 / 2;  // ~1 KiB of buffer an answer; the kernel doubles it
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) != 0) {
    return sys_error("SO_RCVBUF");
  }
  SEBPF_RETURN_IF_ERROR(connect_to(fd.get(), server));
  return DnsUdpBurst(std::move(fd));
}

Status DnsUdpBurst::send(const std::string& name, uint16_t count) {
  for (uint16_t id = 0; id < count; ++id) {
    const auto query = make_query(name, 1, id);
    if (::send(fd_.get(), query.data(), query.size(), 0) != static_cast<ssize_t>(query.size())) {
      return sys_error("send");
    }
  }
  sent_ = count;
  return ok_status();
}

Result<std::vector<std::optional<dns::Message>>> DnsUdpBurst::collect(
    std::chrono::milliseconds timeout) {
  std::vector<std::optional<dns::Message>> answers(sent_);
  size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got < answers.size() && wait_readable(fd_.get(), deadline)) {
    uint8_t buf[1500];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) continue;
    SEBPF_ASSIGN_OR_RETURN(dns::Message message, dns::parse_message({buf, static_cast<size_t>(n)}));
    const uint16_t id = message.header.id;
    if (id >= answers.size()) return Error(Errc::kInvalidArgument, "an answer to no query sent");
    if (!answers[id]) ++got;
    answers[id] = std::move(message);
  }
  return answers;
}

Result<DnsTcpStream> DnsTcpStream::connect(const net::SocketAddress& server, int send_buffer) {
  UniqueFd fd(::socket(server.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("socket");
  if (send_buffer > 0 &&
      setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer) != 0) {
    return sys_error("SO_SNDBUF");
  }
  SEBPF_RETURN_IF_ERROR(connect_to(fd.get(), server));
  return DnsTcpStream(std::move(fd));
}

Status DnsTcpStream::send(const std::vector<uint8_t>& query) {
  out_.push_back(static_cast<uint8_t>(query.size() >> 8));
  out_.push_back(static_cast<uint8_t>(query.size()));
  out_.insert(out_.end(), query.begin(), query.end());
  return flush();
}

Status DnsTcpStream::flush() {
  while (!out_.empty()) {
    const ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ok_status();
    if (n <= 0) return sys_error("send");
    out_.erase(out_.begin(), out_.begin() + n);
  }
  if (finishing_ && ::shutdown(fd_.get(), SHUT_WR) != 0) return sys_error("shutdown");
  finishing_ = false;
  return ok_status();
}

bool DnsTcpStream::wait_writable(std::chrono::milliseconds timeout) {
  pollfd p{fd_.get(), POLLOUT, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

Status DnsTcpStream::finish_sending() {
  finishing_ = true;
  return flush();
}

Result<std::vector<dns::Message>> DnsTcpStream::pump(std::chrono::milliseconds timeout) {
  std::vector<dns::Message> answers;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (answers.empty()) {
    SEBPF_RETURN_IF_ERROR(flush());
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) != 1 || !(p.revents & POLLIN)) continue;
    uint8_t buf[65536];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) continue;
    if (n < 0) return sys_error("recv");
    if (n == 0) return Error(Errc::kUnavailable, "the server closed the connection");
    in_.insert(in_.end(), buf, buf + n);
    size_t used = 0;
    while (in_.size() - used >= 2) {
      const size_t length = static_cast<size_t>(in_[used] << 8 | in_[used + 1]);
      if (in_.size() - used - 2 < length) break;
      SEBPF_ASSIGN_OR_RETURN(dns::Message message,
                             dns::parse_message(std::span<const uint8_t>(&in_[used + 2], length)));
      answers.push_back(std::move(message));
      used += 2 + length;
    }
    in_.erase(in_.begin(), in_.begin() + static_cast<long>(used));
  }
  return answers;
}

std::vector<std::string> answer_addresses(const dns::Message& message) {
  std::vector<std::string> out;
  for (const dns::Record& r : message.answers) {
    if (r.address) out.push_back(r.address->to_string());
  }
  return out;
}

}  // namespace sebpf::testing
