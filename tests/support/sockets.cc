#include "sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "process.h"

namespace sebpf::testing {
namespace {

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
};

Addr make_addr(const std::string& text, uint16_t port) {
  Addr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(*v4);
    a.family = AF_INET;
  } else if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(*v6);
    a.family = AF_INET6;
  }
  return a;
}

int wait_fd(int fd, short events, milliseconds timeout) {
  pollfd p{fd, events, 0};
  const int r = poll(&p, 1, static_cast<int>(timeout.count()));
  if (r == 0) return ETIMEDOUT;
  if (r < 0) return errno;
  return 0;
}

// Non-blocking connect bounded by timeout; 0 or errno.
int connect_with_timeout(int fd, const Addr& a, milliseconds timeout) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a.ss), a.len) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  if (int e = wait_fd(fd, POLLOUT, timeout); e != 0) return e;
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

int send_and_expect_echo(int fd, milliseconds timeout) {
  const char msg[] = "super-ebpf";
  if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) < 0) return errno;
  char buf[64];
  if (int e = wait_fd(fd, POLLIN, timeout); e != 0) return e;
  const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0) return errno;
  if (n == 0) return ECONNRESET;
  return (static_cast<size_t>(n) == sizeof(msg) && std::memcmp(buf, msg, sizeof(msg)) == 0)
             ? 0
             : EPROTO;
}

constexpr char kUdpMessage[] = "super-ebpf";

// Waits for the echo of a datagram sent on `fd`.
int receive_udp_echo(int fd, milliseconds timeout) {
  char buf[64];
  const int result = wait_fd(fd, POLLIN, timeout);
  if (result == 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0) return errno;
  return result;
}

constexpr uint16_t kLocalExperimental = 0x88b5;  // IEEE 802 local experimental EtherType
constexpr char kFrameMarker[] = "sebpf-frame";

struct Frame {
  ether_header eth;
  char payload[sizeof(kFrameMarker)];
} __attribute__((packed));

// One datagram back to its sender, from the address it was sent to (the
// namespace may have several, and a client's connected socket takes only
// answers from the one it connected to).
void echo_datagram(int udp, char* buf, size_t size) {
  sockaddr_storage from{};
  iovec iov = {buf, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))];
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof(from);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = recvmsg(udp, &msg, 0);
  if (n <= 0) return;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      info.ipi6_ifindex = 0;  // any route; only the source address matters
      std::memcpy(CMSG_DATA(c), &info, sizeof(info));
    }
  }
  iov.iov_len = static_cast<size_t>(n);
  sendmsg(udp, &msg, 0);
}

}  // namespace

int tcp_echo(const std::string& addr, uint16_t port, milliseconds timeout) {
  TcpClient client;
  if (int e = client.connect(addr, port, timeout); e != 0) return e;
  return client.echo(timeout);
}

int udp_echo(const std::string& addr, uint16_t port, bool connected, milliseconds timeout) {
  UdpClient client;
  const int result = connected ? client.connect(addr, port) : client.aim(addr, port);
  return result != 0 ? result : client.echo(timeout);
}

int ping(const std::string& addr, milliseconds timeout) {
  const auto secs = std::to_string(std::max<long>(1, static_cast<long>(timeout.count() / 1000)));
  const CommandResult r = run_command({"ping", "-n", "-c", "1", "-W", secs, addr});
  if (r.exit_code == 0) return 0;
  return r.output.find("Operation not permitted") != std::string::npos ? EPERM : ETIMEDOUT;
}

int TcpClient::connect(const std::string& addr, uint16_t port, milliseconds timeout) {
  const Addr a = make_addr(addr, port);
  if (!a.family) return EINVAL;
  const int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  fd_.reset(fd);
  return connect_with_timeout(fd_.get(), a, timeout);
}

int TcpClient::echo(milliseconds timeout) { return send_and_expect_echo(fd_.get(), timeout); }

int UdpClient::aim(const std::string& addr, uint16_t port) {
  const Addr a = make_addr(addr, port);
  if (!a.family) return EINVAL;
  const int fd = socket(a.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  fd_.reset(fd);
  peer_ = a.ss;
  peer_len_ = a.len;
  return 0;
}

int UdpClient::connect(const std::string& addr, uint16_t port) {
  if (const int aimed = aim(addr, port); aimed != 0) return aimed;
  const socklen_t len = std::exchange(peer_len_, 0);  // send() from now on
  return ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&peer_), len) == 0 ? 0 : errno;
}

int UdpClient::echo(milliseconds timeout) {
  if (sendto(fd_.get(), kUdpMessage, sizeof(kUdpMessage), 0,
             peer_len_ ? reinterpret_cast<const sockaddr*>(&peer_) : nullptr, peer_len_) < 0) {
    return errno;
  }
  return receive_udp_echo(fd_.get(), timeout);
}

void serve_echo(uint16_t port) {
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_port = htons(port);
  const int zero = 0, one = 1;
  const int tcp = socket(AF_INET6, SOCK_STREAM, 0);
  const int udp = socket(AF_INET6, SOCK_DGRAM, 0);
  for (int fd : {tcp, udp}) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0) _exit(90);
  }
  if (setsockopt(udp, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) != 0) _exit(92);
  if (listen(tcp, 64) != 0) _exit(91);
  std::vector<pollfd> fds = {{tcp, POLLIN, 0}, {udp, POLLIN, 0}};
  char buf[2048];
  while (true) {
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (fds[i].fd == tcp) {
        const int c = accept(tcp, nullptr, nullptr);
        if (c >= 0) fds.push_back({c, POLLIN, 0});
      } else if (fds[i].fd == udp) {
        echo_datagram(udp, buf, sizeof(buf));
      } else {
        const ssize_t n = recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n <= 0) {
          close(fds[i].fd);
          fds[i].fd = -1;
        } else {
          send(fds[i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
        }
      }
    }
    std::erase_if(fds, [](const pollfd& p) { return p.fd < 0; });
  }
}

UniqueFd udp_listener(const std::string& addr, uint16_t port) {
  const Addr a = make_addr(addr, port);
  UniqueFd fd(socket(a.family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd && bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.ss), a.len) != 0) fd.reset();
  return fd;
}

bool datagram_arrives(int fd, milliseconds timeout) {
  char buf[16];
  return wait_fd(fd, POLLIN, timeout) == 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0;
}

int send_datagram(const std::string& addr, uint16_t port) {
  const Addr a = make_addr(addr, port);
  UniqueFd fd(socket(a.family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  return sendto(fd.get(), "x", 1, 0, reinterpret_cast<const sockaddr*>(&a.ss), a.len) < 0 ? errno
                                                                                          : 0;
}

bool wait_for_tcp(const std::string& addr, uint16_t port, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    TcpClient c;
    if (c.connect(addr, port, milliseconds(200)) == 0) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

int send_frame(const std::string& ifname) {
  UniqueFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  Frame f{};
  std::memset(f.eth.ether_dhost, 0xff, ETH_ALEN);
  f.eth.ether_shost[0] = 0x02;  // locally administered
  f.eth.ether_type = htons(kLocalExperimental);
  std::memcpy(f.payload, kFrameMarker, sizeof(kFrameMarker));
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  to.sll_halen = ETH_ALEN;
  std::memset(to.sll_addr, 0xff, ETH_ALEN);
  const ssize_t n =
      sendto(fd.get(), &f, sizeof(f), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  return n == static_cast<ssize_t>(sizeof(f)) ? 0 : errno;
}

UniqueFd frame_listener(const std::string& ifname) {
  UniqueFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kLocalExperimental)));
  sockaddr_ll at{};
  at.sll_family = AF_PACKET;
  at.sll_protocol = htons(kLocalExperimental);
  at.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (!fd || at.sll_ifindex == 0 ||
      bind(fd.get(), reinterpret_cast<sockaddr*>(&at), sizeof(at)) != 0) {
    return UniqueFd();
  }
  return fd;
}

bool frame_arrives(int fd, milliseconds timeout) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  while (poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
    Frame f{};
    if (recv(fd, &f, sizeof(f), 0) == static_cast<ssize_t>(sizeof(f)) &&
        std::memcmp(f.payload, kFrameMarker, sizeof(kFrameMarker)) == 0) {
      return true;
    }
  }
  return false;
}

std::optional<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return std::nullopt;
  path.copy(addr.sun_path, path.size());
  return addr;
}

bool unix_connects(const std::string& path) {
  const auto addr = unix_address(path);
  UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return addr && client &&
         connect(client.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0;
}

UniqueFd unix_listener(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const auto addr = unix_address(path);
  if (!fd || !addr ||
      bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0 ||
      listen(fd.get(), 128) != 0) {
    fd.reset();
  }
  return fd;
}

}  // namespace sebpf::testing
