#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "dns/message.h"
#include "dns/proxy_loop.h"

namespace sebpf::dns {

uint64_t DnsProxy::Loop::stream_for(uint64_t attachment, size_t u) {
  if (auto it = filling_.find(std::pair(attachment, u)); it != filling_.end()) return it->second;
  const net::SocketAddress& upstream = config_.upstreams[u];
  UniqueFd fd(::socket(upstream.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return 0;
  sockaddr_storage ss;
  const socklen_t len = upstream.to_sockaddr(ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    return 0;
  }
  const uint64_t serial = next_id_++;
  if (!watch(fd.get(), EPOLLOUT, {Kind::kUpstreamTcp, serial}).ok()) return 0;
  UpstreamStream& s = streams_[serial];
  s.fd = std::move(fd);
  s.attachment = attachment;
  s.upstream = u;
  s.writing = true;
  s.heard = Clock::now();
  filling_[std::pair(attachment, u)] = serial;
  return serial;
}

void DnsProxy::Loop::put_on_stream(uint64_t serial, uint64_t id) {
  UpstreamStream& s = streams_.at(serial);
  Pending& p = pending_.at(id);
  do {
    p.upstream_id = random_id();
  } while (s.waiting.contains(p.upstream_id));
  put_id(p.wire, p.upstream_id);
  s.waiting.emplace(p.upstream_id, id);
  p.tcp_stream = serial;
  s.out.push_back(static_cast<uint8_t>(p.wire.size() >> 8));
  s.out.push_back(static_cast<uint8_t>(p.wire.size()));
  s.out.insert(s.out.end(), p.wire.begin(), p.wire.end());
  // Full: it serves the queries it has, and the next go on a fresh one.
  if (s.waiting.size() >= kQueriesPerStream) filling_.erase(std::pair(s.attachment, s.upstream));
  // Written when the loop next looks (the connection may not be up yet).
  if (s.connected && !s.writing) {
    rewatch(s.fd.get(), EPOLLIN | EPOLLOUT);
    s.writing = true;
  }
}

void DnsProxy::Loop::leave_stream(Pending& p) {
  const uint64_t serial = std::exchange(p.tcp_stream, 0);
  auto it = streams_.find(serial);
  if (it == streams_.end()) return;
  it->second.waiting.erase(p.upstream_id);
  // Not kept open for later queries: an idle connection would hold a
  // descriptor and a port, and the upstream's slot, for nothing.
  if (it->second.waiting.empty()) close_stream(serial);
}

void DnsProxy::Loop::stream_ready(uint64_t serial, uint32_t events) {
  auto it = streams_.find(serial);
  if (it == streams_.end()) return;
  if (UpstreamStream& s = it->second; !s.connected) {
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(s.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      end_stream(serial, /*resend_if_answered=*/false);
      return;
    }
    s.connected = true;
    s.heard = Clock::now();
  }
  // Reading first: the answers that came before a close or a reset are
  // taken before a write finds the connection gone.
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    read_stream(serial);
    it = streams_.find(serial);
    if (it == streams_.end()) return;  // closed: ended, or every query answered
  }
  if (!write_stream(it->second)) end_stream(serial, /*resend_if_answered=*/true);
}

bool DnsProxy::Loop::write_stream(UpstreamStream& s) {
  if (!s.out.empty()) {
    const ssize_t n = ::send(s.fd.get(), s.out.data(), s.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (n > 0) s.out.erase(s.out.begin(), s.out.begin() + n);
  }
  const bool writing = !s.out.empty();
  if (writing != s.writing) {
    rewatch(s.fd.get(), EPOLLIN | (writing ? uint32_t{EPOLLOUT} : 0u));
    s.writing = writing;
  }
  return true;
}

void DnsProxy::Loop::read_stream(uint64_t serial) {
  UpstreamStream& s = streams_.at(serial);
  uint8_t buf[16384];
  const ssize_t n = ::read(s.fd.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    end_stream(serial, /*resend_if_answered=*/true);
    return;
  }
  s.in.insert(s.in.end(), buf, buf + n);
  // The complete answers (length-prefixed), taken out first: answering
  // the last query waiting on the stream closes it.
  std::vector<std::vector<uint8_t>> answers;
  size_t used = 0;
  while (s.in.size() - used >= 2) {
    const size_t length = static_cast<size_t>(s.in[used] << 8 | s.in[used + 1]);
    if (s.in.size() - used - 2 < length) break;
    const auto first = s.in.begin() + static_cast<long>(used + 2);
    answers.emplace_back(first, first + static_cast<long>(length));
    used += 2 + length;
  }
  s.in.erase(s.in.begin(), s.in.begin() + static_cast<long>(used));
  if (!answers.empty()) {
    s.answered = true;
    s.heard = Clock::now();
  }
  for (std::vector<uint8_t>& answer : answers) {
    const auto stream = streams_.find(serial);
    if (stream == streams_.end()) return;  // closed: no query is left to answer
    if (answer.size() < kHeaderSize) continue;
    const auto waiter =
        stream->second.waiting.find(static_cast<uint16_t>(answer[0] << 8 | answer[1]));
    if (waiter == stream->second.waiting.end()) continue;  // late, or not ours
    const uint64_t query = waiter->second;
    // Its id with another question: that upstream is not to be trusted
    // with this query.
    if (!try_answer(query, answer)) next_upstream(query);
  }
}

void DnsProxy::Loop::close_stream(uint64_t serial) {
  auto it = streams_.find(serial);
  if (it == streams_.end()) return;
  UpstreamStream& s = it->second;
  if (auto f = filling_.find(std::pair(s.attachment, s.upstream));
      f != filling_.end() && f->second == serial) {
    filling_.erase(f);
  }
  unwatch(s.fd.get());
  // With a reset, not a FIN: the side that closes first keeps a
  // connection in TIME_WAIT for a minute, and with it its port for that
  // upstream; a workload whose TCP queries came one at a time (a stream
  // each) at its dns.max_qps would take the host's ephemeral ports (28,232
  // by default: 470 connections a second to one upstream), and every TCP
  // connection to that resolver, the host's own too, would fail. Nothing
  // waits on the stream any more: a reset loses nothing.
  const linger reset{.l_onoff = 1, .l_linger = 0};
  setsockopt(s.fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  streams_.erase(it);
}

void DnsProxy::Loop::end_stream(uint64_t serial, bool resend_if_answered) {
  auto it = streams_.find(serial);
  if (it == streams_.end()) return;
  const bool resend = resend_if_answered && it->second.answered;
  std::vector<uint64_t> queries;
  for (const auto& [upstream_id, query] : it->second.waiting) queries.push_back(query);
  for (const uint64_t query : queries) pending_.at(query).tcp_stream = 0;
  close_stream(serial);
  for (const uint64_t query : queries) {
    auto p = pending_.find(query);
    if (p == pending_.end()) continue;  // answered SERVFAIL by an earlier one's failure
    if (resend && p->second.stream_resends < kStreamResends) {
      ++p->second.stream_resends;
      send_again(query);
    } else {
      next_upstream(query);
    }
  }
}

void DnsProxy::Loop::upstream_timed_out(uint64_t id, Clock::time_point now) {
  const Pending& p = pending_.at(id);
  // Nothing at all came on its stream for that long (a connection dropped
  // without a reset, a resolver gone): every query on it moves on now, and
  // no new one goes on it.
  if (auto s = streams_.find(p.tcp_stream);
      s != streams_.end() && now - s->second.heard >= config_.upstream_timeout) {
    end_stream(p.tcp_stream, /*resend_if_answered=*/false);
    return;
  }
  next_upstream(id);
}

}  // namespace sebpf::dns
