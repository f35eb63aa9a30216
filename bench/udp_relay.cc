// The floor under any UDP DNS forwarder on this machine: a relay that does
// nothing a forwarder could skip. It reads datagrams on 127.0.0.1:<port>,
// swaps the DNS id for a slot number, sends them to the upstream over a
// connected socket, and sends each answer back to whoever asked, with the
// id restored. No parsing, no checks, no policy, no map writes: what is
// left is the kernel's work per datagram plus the least bookkeeping there
// is, batched the way the DNS endpoint batches (recvmmsg/sendmmsg, the
// replies of a turn sent at its end) on the same number of event-loop
// threads. bench/dns_bench.sh runs it as target "relay", so a run shows
// how far the endpoint and dnsdist are from what the kernel allows.
//
//   sebpf_udp_relay <port> <upstream-ipv4> <upstream-port> [threads]
//
// Not a product: it trusts the upstream (any answer with a known slot is
// relayed) and runs until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace {

constexpr unsigned kBatch = 32;
constexpr unsigned kReadBurst = 64;
constexpr size_t kSlot = 4096 + 64;  // DNS over UDP here: answers are small

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "sebpf_udp_relay: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

sockaddr_in ipv4(const char* address, int port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) {
    std::fprintf(stderr, "sebpf_udp_relay: not an IPv4 address: %s\n", address);
    std::exit(2);
  }
  return sin;
}

// Datagrams read with one recvmmsg, or queued for one sendmmsg.
struct Batch {
  std::unique_ptr<uint8_t[]> bytes = std::make_unique<uint8_t[]>(kBatch * kSlot);
  std::array<mmsghdr, kBatch> msgs{};
  std::array<iovec, kBatch> iov{};
  std::array<sockaddr_in, kBatch> peers{};
  unsigned count = 0;

  uint8_t* slot(unsigned i) { return &bytes[i * kSlot]; }

  // Reads up to kBatch datagrams from `fd`; returns how many.
  unsigned receive(int fd) {
    for (unsigned i = 0; i < kBatch; ++i) {
      iov[i] = {slot(i), kSlot};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
    }
    const int n = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    return n > 0 ? static_cast<unsigned>(n) : 0;
  }

  // Queues a copy of `data` (to `to`, or down a connected socket).
  void add(const uint8_t* data, size_t length, const sockaddr_in* to) {
    std::memcpy(slot(count), data, length);
    iov[count] = {slot(count), length};
    msgs[count] = {};
    msgs[count].msg_hdr.msg_iov = &iov[count];
    msgs[count].msg_hdr.msg_iovlen = 1;
    if (to != nullptr) {
      peers[count] = *to;
      msgs[count].msg_hdr.msg_name = &peers[count];
      msgs[count].msg_hdr.msg_namelen = sizeof peers[count];
    }
    ++count;
  }

  void send(int fd) {
    for (unsigned sent = 0; sent < count;) {
      const int n = ::sendmmsg(fd, &msgs[sent], count - sent, MSG_DONTWAIT);
      sent += n > 0 ? static_cast<unsigned>(n) : 1;  // a datagram that fails is lost
    }
    count = 0;
  }
};

struct Asker {
  sockaddr_in peer;
  uint16_t id;
};

// One event loop: shares the listening socket with the other loops
// (EPOLLEXCLUSIVE), has its own upstream socket and id slots.
void serve(int listen_fd, const sockaddr_in& upstream) {
  sebpf::UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  sebpf::UniqueFd up(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!epoll || !up) die("socket");
  if (::connect(up.get(), reinterpret_cast<const sockaddr*>(&upstream), sizeof upstream) != 0) {
    die("connect upstream");
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.fd = listen_fd;
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listen_fd, &ev) != 0) die("epoll_ctl");
  ev.events = EPOLLIN;
  ev.data.fd = up.get();
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, up.get(), &ev) != 0) die("epoll_ctl");

  std::vector<Asker> askers(65536);
  uint16_t next_slot = 0;
  Batch in, to_upstream, to_clients;
  const auto flush = [&] {
    to_upstream.send(up.get());
    to_clients.send(listen_fd);
  };
  std::array<epoll_event, 8> events;
  while (true) {
    const int n = epoll_wait(epoll.get(), events.data(), events.size(), -1);
    for (int e = 0; e < n; ++e) {
      const bool from_clients = events[static_cast<size_t>(e)].data.fd == listen_fd;
      for (unsigned read = 0; read < kReadBurst;) {
        const unsigned got = in.receive(from_clients ? listen_fd : up.get());
        for (unsigned i = 0; i < got; ++i) {
          uint8_t* m = in.slot(i);
          const size_t length = in.msgs[i].msg_len;
          if (length < 12) continue;
          if (to_upstream.count == kBatch || to_clients.count == kBatch) flush();
          if (from_clients) {
            const uint16_t slot = next_slot++;
            askers[slot] = {in.peers[i], static_cast<uint16_t>(m[0] << 8 | m[1])};
            m[0] = static_cast<uint8_t>(slot >> 8);
            m[1] = static_cast<uint8_t>(slot);
            to_upstream.add(m, length, nullptr);
          } else {
            const Asker& a = askers[static_cast<uint16_t>(m[0] << 8 | m[1])];
            m[0] = static_cast<uint8_t>(a.id >> 8);
            m[1] = static_cast<uint8_t>(a.id);
            to_clients.add(m, length, &a.peer);
          }
        }
        if (got < kBatch) break;
        read += got;
      }
    }
    flush();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: %s <port> <upstream-ipv4> <upstream-port> [threads]\n", argv[0]);
    return 2;
  }
  const sockaddr_in local = ipv4("127.0.0.1", std::atoi(argv[1]));
  const sockaddr_in upstream = ipv4(argv[2], std::atoi(argv[3]));
  const int threads = argc == 5 ? std::atoi(argv[4]) : 2;
  sebpf::UniqueFd listen_fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd) die("socket");
  if (::bind(listen_fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    die("bind");
  }
  std::vector<std::thread> loops;
  for (int i = 0; i < threads; ++i) loops.emplace_back(serve, listen_fd.get(), upstream);
  for (std::thread& t : loops) t.join();
}
