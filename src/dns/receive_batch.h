// Datagrams read in batches: one recvmmsg for up to ReceiveBatch::kSize of
// them (a system call per datagram was most of the DNS endpoint's cost).
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace sebpf::dns {

// Buffers for reading up to kSize datagrams with one recvmmsg. The
// messages are valid until the next receive().
class ReceiveBatch {
 public:
  static constexpr unsigned kSize = 32;

  // Not zeroed: only the bytes datagrams fill are ever touched.
  ReceiveBatch() : buffers_(std::make_unique_for_overwrite<uint8_t[]>(kSize * kSlot)) {}

  // Datagrams read, at most `limit` (0 when none is waiting), or -1 with
  // errno set.
  int receive(int fd, unsigned limit = kSize) {
    limit = std::min(limit, kSize);
    for (unsigned i = 0; i < limit; ++i) {
      iov_[i] = {&buffers_[i * kSlot], kMaxDatagram};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &peers_[i];
      msgs_[i].msg_hdr.msg_namelen = sizeof peers_[i];
    }
    const int n = ::recvmmsg(fd, msgs_.data(), limit, MSG_DONTWAIT, nullptr);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return n;
  }
  std::span<uint8_t> message(int i) {
    const auto k = static_cast<size_t>(i);
    return {&buffers_[k * kSlot], msgs_[k].msg_len};
  }
  // Cut short by the buffer (MSG_TRUNC): not the whole datagram.
  bool truncated(int i) const {
    return msgs_[static_cast<size_t>(i)].msg_hdr.msg_flags & MSG_TRUNC;
  }
  const sockaddr_storage& peer(int i) const { return peers_[static_cast<size_t>(i)]; }
  socklen_t peer_length(int i) const { return msgs_[static_cast<size_t>(i)].msg_hdr.msg_namelen; }

 private:
  // Each slot holds the largest datagram, but a DNS message fills only its
  // first few cache lines. Slots a power of two apart (64 KiB) put all
  // those lines in the same few cache sets, and a batch then evicts itself:
  // the endpoint spent ~25 % more CPU per query (measured against this
  // layout, both orders, bench/dns_bench.sh's setup). One cache line more
  // per slot spreads their starts over the sets.
  static constexpr size_t kMaxDatagram = 65535;
  static constexpr size_t kSlot = 65536 + 64;
  std::unique_ptr<uint8_t[]> buffers_;
  std::array<mmsghdr, kSize> msgs_{};
  std::array<iovec, kSize> iov_{};
  std::array<sockaddr_storage, kSize> peers_{};
};

}  // namespace sebpf::dns
