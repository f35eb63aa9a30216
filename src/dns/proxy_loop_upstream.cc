#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "dns/proxy_loop.h"
#include "dns/response.h"

namespace sebpf::dns {

void DnsProxy::Loop::flush_datagrams() {
  do {
    std::vector<Datagram>& batch = outbox_turn_;
    batch.swap(outbox_);  // keeps both vectors' capacity from turn to turn
    // A turn writes to a few sockets (the endpoints' and the upstream
    // sockets): each one's datagrams go together, in order.
    std::vector<int>& fds = send_fds_;
    fds.clear();
    for (const Datagram& d : batch) {
      if (std::find(fds.begin(), fds.end(), d.fd) == fds.end()) fds.push_back(d.fd);
    }
    std::vector<uint64_t> failed;
    for (const int fd : fds) send_datagrams(fd, batch, failed);
    if (std::any_of(batch.begin(), batch.end(), [](const Datagram& d) { return d.query != 0; })) {
      queries_sent_at_ = Clock::now();
    }
    for (Datagram& d : batch) recycle(std::move(d.bytes));
    batch.clear();
    for (uint64_t id : failed) next_upstream(id);
  } while (!outbox_.empty());
}

void DnsProxy::Loop::send_datagrams(int fd, std::vector<Datagram>& batch,
                                    std::vector<uint64_t>& failed) {
  std::vector<mmsghdr>& msgs = send_msgs_;
  std::vector<iovec>& iov = send_iov_;
  std::vector<size_t>& index = send_index_;  // msgs[k] sends batch[index[k]]
  msgs.clear();
  iov.clear();
  index.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    Datagram& d = batch[i];
    if (d.fd != fd) continue;
    std::span<uint8_t> bytes = d.bytes;
    if (d.query != 0) {
      auto p = pending_.find(d.query);
      if (p == pending_.end()) continue;
      bytes = p->second.wire;
    }
    iov.push_back({bytes.data(), bytes.size()});
    mmsghdr m{};
    if (d.to_length != 0) {
      m.msg_hdr.msg_name = &d.to;
      m.msg_hdr.msg_namelen = d.to_length;
    }
    msgs.push_back(m);
    index.push_back(i);
  }
  for (size_t k = 0; k < msgs.size(); ++k) {
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }
  for (size_t sent = 0; sent < msgs.size();) {
    const int n = ::sendmmsg(fd, &msgs[sent],
                             static_cast<unsigned>(std::min<size_t>(msgs.size() - sent, UINT_MAX)),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    const Datagram& d = batch[index[sent]];
    if (d.query != 0) {
      backend_.report(
          "dns_upstream_unreachable", 0,
          config_.upstreams[pending_.at(d.query).upstream].to_string() + ": " + errno_text(errno));
      failed.push_back(d.query);
    }
    ++sent;  // that one is lost (or retried upstream); the rest still go
  }
}

uint16_t DnsProxy::Loop::random_id() {
  if (random_used_ == random_ids_.size()) {
    // 256 bytes: getrandom never returns fewer for requests this small.
    auto* bytes = reinterpret_cast<uint8_t*>(random_ids_.data());
    for (size_t got = 0; got < sizeof random_ids_;) {
      const ssize_t n = getrandom(bytes + got, sizeof random_ids_ - got, 0);
      if (n > 0) got += static_cast<size_t>(n);
    }
    random_used_ = 0;
  }
  return random_ids_[random_used_++];
}

uint64_t DnsProxy::Loop::udp_socket_for(size_t u) {
  if (active_sockets_.size() < config_.upstreams.size()) {
    active_sockets_.resize(config_.upstreams.size());
  }
  uint64_t& active = active_sockets_[u];
  if (active != 0) {
    UpstreamSocket& old = upstream_sockets_.at(active);
    if (old.uses < kQueriesPerSocket) return active;
    old.retired = true;
    close_if_idle(active);
    active = 0;
  }
  const net::SocketAddress& upstream = config_.upstreams[u];
  UniqueFd fd(::socket(upstream.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = upstream.to_sockaddr(ss);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return 0;
  const uint64_t serial = next_id_++;
  if (!watch(fd.get(), EPOLLIN, {Kind::kUpstreamUdp, serial}).ok()) return 0;
  upstream_sockets_[serial] = UpstreamSocket{std::move(fd), u, 0, 0, false};
  active = serial;
  return serial;
}

void DnsProxy::Loop::close_if_idle(uint64_t serial) {
  auto it = upstream_sockets_.find(serial);
  if (it == upstream_sockets_.end() || !it->second.retired || it->second.waiting > 0) return;
  unwatch(it->second.fd.get());
  upstream_sockets_.erase(it);
}

void DnsProxy::Loop::leave_upstream(Pending& p) {
  leave_stream(p);
  if (p.udp_socket != 0) {
    waiting_.erase(wait_key(p.udp_socket, p.upstream_id));
    if (auto it = upstream_sockets_.find(p.udp_socket); it != upstream_sockets_.end()) {
      it->second.waiting--;
      close_if_idle(p.udp_socket);
    }
    p.udp_socket = 0;
  }
}

void DnsProxy::Loop::send_upstream(uint64_t id) {
  Pending& p = pending_.at(id);
  const net::SocketAddress& upstream = config_.upstreams[p.upstream];
  bool ok = true;
  if (!p.upstream_tcp) {
    const uint64_t sock = udp_socket_for(p.upstream);
    ok = sock != 0;
    if (ok) {
      do {
        p.upstream_id = random_id();
      } while (waiting_.count(wait_key(sock, p.upstream_id)));
      put_id(p.wire, p.upstream_id);
      UpstreamSocket& s = upstream_sockets_.at(sock);
      s.uses++;
      s.waiting++;
      p.udp_socket = sock;
      waiting_[wait_key(sock, p.upstream_id)] = id;
      Datagram& d = outbox_.emplace_back();
      d.fd = s.fd.get();
      d.query = id;
    }
  } else {
    const uint64_t stream = stream_for(p.attachment, p.upstream);
    ok = stream != 0;
    if (ok) put_on_stream(stream, id);
  }
  if (!ok) {
    backend_.report("dns_upstream_unreachable", 0, upstream.to_string() + ": " + errno_text(errno));
    next_upstream(id);
    return;
  }
  p.deadline = Clock::now() + config_.upstream_timeout;
  upstream_deadlines_.emplace_back(p.deadline, id);
}

void DnsProxy::Loop::next_upstream(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  leave_upstream(p);
  if (--p.attempts_left == 0) {
    servfail(id);
    return;
  }
  p.upstream = (p.upstream + 1) % config_.upstreams.size();
  send_again(id);
}

void DnsProxy::Loop::send_again(uint64_t id) {
  if (auto ep = endpoints_.find(pending_.at(id).attachment);
      ep != endpoints_.end() && !within_upstream_budget(*ep->second)) {
    count(*ep->second, Count::kRateLimited);
    servfail(id);
    return;
  }
  send_upstream(id);
}

void DnsProxy::Loop::servfail(uint64_t id) {
  count(pending_.at(id).attachment, Count::kServfail);
  PendingEntry done = finish(id);
  reply_to(done.mapped(), error_response(done.mapped(), rcode::kServFail));
  recycle(std::move(done));
}

std::vector<uint8_t> DnsProxy::Loop::error_response(const Pending& p, uint16_t code) {
  std::vector<uint8_t> out = make_error_response(p.query, p.wire, code);
  put_id(out, p.query.header.id);
  return out;
}

DnsProxy::Loop::PendingEntry DnsProxy::Loop::finish(uint64_t id) {
  auto it = pending_.find(id);
  leave_upstream(it->second);
  PendingEntry entry = pending_.extract(it);
  const uint64_t attachment = entry.mapped().attachment;
  if (auto ep = endpoints_.find(attachment); ep != endpoints_.end()) ep->second->inflight--;
  return entry;
}

Pending& DnsProxy::Loop::new_pending(uint64_t id) {
  if (spare_pending_.empty()) return pending_[id];
  PendingEntry entry = std::move(spare_pending_.back());
  spare_pending_.pop_back();
  entry.key() = id;
  return pending_.insert(std::move(entry)).position->second;
}

void DnsProxy::Loop::recycle(PendingEntry entry) {
  if (entry.empty() || spare_pending_.size() >= kSparePending) return;
  Pending& p = entry.mapped();
  std::vector<uint8_t> wire = std::move(p.wire);
  std::string chain = std::move(p.chain);
  p = Pending{};
  if (wire.capacity() <= kKeptBufferSize) p.wire = std::move(wire);
  if (chain.capacity() <= kKeptBufferSize) p.chain = std::move(chain);
  spare_pending_.push_back(std::move(entry));
}

std::vector<uint8_t> DnsProxy::Loop::new_buffer(std::span<const uint8_t> bytes) {
  std::vector<uint8_t> buffer;
  if (!spare_buffers_.empty()) {
    buffer = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
  }
  buffer.assign(bytes.begin(), bytes.end());
  return buffer;
}

void DnsProxy::Loop::recycle(std::vector<uint8_t> buffer) {
  if (buffer.capacity() == 0 || buffer.capacity() > kKeptBufferSize ||
      spare_buffers_.size() >= kSparePending) {
    return;
  }
  spare_buffers_.push_back(std::move(buffer));
}

void DnsProxy::Loop::reply_to(const Pending& p, std::vector<uint8_t> response) {
  if (p.client.tcp) {
    if (auto c = clients_.find(p.client.tcp_client); c != clients_.end()) {
      c->second.inflight--;
      client_progressed(c->second, p.client.tcp_client);
    }
  }
  reply(p.client, &p.query, std::move(response));
}

}  // namespace sebpf::dns
