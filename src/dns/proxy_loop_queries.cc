#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "dns/proxy_loop.h"
#include "dns/response.h"
#include "dns/upstream_query.h"

namespace sebpf::dns {

bool DnsProxy::Loop::take_token(Endpoint& ep) {
  if (config_.max_qps == 0) return true;
  std::lock_guard lock(ep.bucket_mu);
  ep.qps.refill(config_.max_qps, config_.max_qps, Clock::now());
  return ep.qps.take();
}

bool DnsProxy::Loop::within_upstream_budget(Endpoint& ep) {
  return upstream_budget_ == nullptr || upstream_budget_->take(ep.upstream_share, Clock::now());
}

void DnsProxy::Loop::count(uint64_t attachment, Count c) {
  if (auto ep = endpoints_.find(attachment); ep != endpoints_.end()) count(*ep->second, c);
}

uint32_t DnsProxy::Loop::claim_inflight(Endpoint& endpoint, uint32_t want) const {
  uint32_t now = endpoint.inflight.load(std::memory_order_relaxed);
  uint32_t taken = 0;
  do {
    if (now >= config_.max_inflight) return 0;
    taken = std::min(want, config_.max_inflight - now);
  } while (!endpoint.inflight.compare_exchange_weak(now, now + taken));
  return taken;
}

void DnsProxy::Loop::read_udp_queries(int fd, uint64_t attachment) {
  const auto ep = endpoints_.find(attachment);
  if (ep == endpoints_.end()) return;
  // Stays alive for the turn (closing_), even if the endpoint closes.
  Endpoint& endpoint = *ep->second;
  for (int read = 0; read < kReadBurst;) {
    const uint32_t claimed = claim_inflight(endpoint, ReceiveBatch::kSize);
    if (claimed == 0) {
      unwatch(fd);
      wait_for_room(attachment, fd, 0);
      return;
    }
    const int n = std::max(recv_batch_.receive(fd, claimed), 0);
    uint32_t unused = claimed;  // less each query handle_query takes over
    for (int i = 0; i < n; ++i) {
      if (!endpoints_.count(attachment)) break;
      auto peer =
          net::SocketAddress::from_sockaddr(recv_batch_.peer(i), recv_batch_.peer_length(i));
      if (!peer.ok()) continue;
      if (recv_batch_.truncated(i)) {  // over 64 KiB: no DNS message
        count(attachment, Count::kQueries);
        count(attachment, Count::kMalformed);
        continue;
      }
      --unused;
      ClientRef client{.tcp = false, .udp_fd = fd, .peer = *peer, .tcp_client = 0};
      handle_query(attachment, recv_batch_.message(i), client);
    }
    endpoint.inflight -= unused;
    // None waiting, or an error the next read reports again; or gone.
    if (static_cast<unsigned>(n) < claimed || !endpoints_.count(attachment)) return;
    read += n;
  }
}

void DnsProxy::Loop::wait_for_room(uint64_t attachment, int fd, uint64_t client) {
  if (room_waiters_.empty()) room_recheck_ = Clock::now() + kRoomRecheck;
  room_waiters_.push_back({attachment, fd, client});
}

void DnsProxy::Loop::take_up_room() {
  if (room_waiters_.empty()) return;
  room_waiters_turn_.swap(room_waiters_);
  room_recheck_ = Clock::now() + kRoomRecheck;
  for (const RoomWaiter& w : room_waiters_turn_) {
    const auto ep = endpoints_.find(w.attachment);
    if (ep == endpoints_.end()) continue;  // closed, with its clients
    if (ep->second->inflight.load(std::memory_order_relaxed) >= config_.max_inflight) {
      room_waiters_.push_back(w);
      continue;
    }
    if (w.client != 0) {
      if (auto c = clients_.find(w.client); c != clients_.end()) {
        c->second.waiting_room = false;
        resume_.push_back(w.client);
      }
      continue;
    }
    const auto& sockets = ep->second->udp;
    if (std::none_of(sockets.begin(), sockets.end(),
                     [&](const UniqueFd& s) { return s.get() == w.fd; })) {
      continue;  // moved to other sockets
    }
    // Watched again, a socket with queries waiting is ready at once.
    if (!watch(w.fd, EPOLLIN | EPOLLEXCLUSIVE, {Kind::kEndpointUdp, w.attachment}).ok()) {
      room_waiters_.push_back(w);  // tried again at the next check
    }
  }
  room_waiters_turn_.clear();
}

void DnsProxy::Loop::accept_clients(int listen_fd, uint64_t attachment) {
  auto ep = endpoints_.find(attachment);
  if (ep == endpoints_.end()) return;
  while (true) {
    UniqueFd fd;
    switch (accept_one(listen_fd, fd)) {
      case Accepted::kClient:
        break;
      case Accepted::kShed:
        count(*ep->second, Count::kRateLimited);
        backend_.report("dns_tcp_client_refused", attachment,
                        "out of file descriptors (RLIMIT_NOFILE)");
        continue;
      case Accepted::kOutOfDescriptors:
        pause_listener(listen_fd, attachment);
        return;
      case Accepted::kNone:
        return;
    }
    // Counted first, then checked: the loops share the count.
    if (ep->second->tcp_clients.fetch_add(1) >= config_.max_tcp_clients) {
      ep->second->tcp_clients--;
      count(*ep->second, Count::kRateLimited);
      continue;  // closed at once
    }
    const uint64_t id = next_id_++;
    const int raw = fd.get();
    TcpClient client;
    client.fd = std::move(fd);
    client.attachment = attachment;
    client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
    if (!watch(raw, EPOLLIN, {Kind::kTcpClient, id}).ok()) {
      ep->second->tcp_clients--;
      continue;
    }
    client_deadlines_.emplace(client.idle_deadline, id);
    clients_.emplace(id, std::move(client));
  }
}

DnsProxy::Loop::Accepted DnsProxy::Loop::accept_one(int listen_fd, UniqueFd& fd) {
  std::lock_guard lock(gate_.mu);
  fd.reset(::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  const int error = errno;
  // Taken again as soon as a descriptor is free: another thread of the
  // daemon may have taken the slot it left.
  if (!gate_.spare) gate_.spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (fd) return Accepted::kClient;
  if (error != EMFILE && error != ENFILE) return Accepted::kNone;
  if (!gate_.spare) return Accepted::kOutOfDescriptors;
  gate_.spare.reset();
  const bool shed = UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC)).valid();
  gate_.spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return shed ? Accepted::kShed : Accepted::kOutOfDescriptors;
}

void DnsProxy::Loop::pause_listener(int listen_fd, uint64_t attachment) {
  unwatch(listen_fd);
  paused_.push_back({Clock::now() + kAcceptPause, attachment, listen_fd});
  backend_.report("dns_tcp_accept_paused", attachment,
                  "out of file descriptors (RLIMIT_NOFILE), with none spare to refuse a client");
}

void DnsProxy::Loop::resume_listeners(Clock::time_point now) {
  while (!paused_.empty() && paused_.front().until <= now) {
    const PausedListener p = paused_.front();
    paused_.pop_front();
    const auto ep = endpoints_.find(p.attachment);
    if (ep == endpoints_.end()) continue;
    const auto& listeners = ep->second->tcp;
    if (std::none_of(listeners.begin(), listeners.end(),
                     [&](const UniqueFd& l) { return l.get() == p.fd; })) {
      continue;
    }
    (void)watch(p.fd, EPOLLIN | EPOLLEXCLUSIVE, {Kind::kEndpointTcp, p.attachment});
  }
}

void DnsProxy::Loop::close_client(uint64_t id) {
  auto c = clients_.find(id);
  if (c == clients_.end()) return;
  unwatch(c->second.fd.get());
  if (auto ep = endpoints_.find(c->second.attachment); ep != endpoints_.end()) {
    ep->second->tcp_clients--;
  }
  clients_.erase(c);
}

void DnsProxy::Loop::client_ready(uint64_t id, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {  // reset: no answer can reach it any more
    close_client(id);
    return;
  }
  if (events & EPOLLOUT) {
    flush_client(id);
    if (!clients_.count(id)) return;
  }
  if (!(events & EPOLLIN)) return;
  TcpClient& client = clients_.at(id);
  if (client.held_back || client.sent_all) return;  // an event from before the rewatch
  uint8_t buf[16384];
  const ssize_t n = ::read(client.fd.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n < 0) {
    close_client(id);
    return;
  }
  if (n == 0) {
    client.sent_all = true;
  } else {
    client.in.insert(client.in.end(), buf, buf + n);
    client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
  }
  serve_client(id);
}

bool DnsProxy::Loop::has_room(const TcpClient& client) {
  return client.inflight < kMaxTcpClientInflight && client.out.size() < kMaxTcpClientOutput;
}

void DnsProxy::Loop::serve_client(uint64_t id) {
  auto c = clients_.find(id);
  if (c == clients_.end()) return;
  const auto ep = endpoints_.find(c->second.attachment);
  if (ep == endpoints_.end()) return;
  Endpoint& endpoint = *ep->second;
  size_t used = 0;
  bool no_room = false;
  // Draining, a client's further queries are left unread: one that kept
  // asking would keep the drain from ending.
  while (!draining_ && has_room(c->second) && c->second.in.size() - used >= 2) {
    std::vector<uint8_t>& in = c->second.in;
    const size_t length = static_cast<size_t>(in[used] << 8 | in[used + 1]);
    if (in.size() - used - 2 < length) break;
    if (length == 0) {
      count(c->second.attachment, Count::kMalformed);
      close_client(id);
      return;
    }
    if (claim_inflight(endpoint, 1) == 0) {
      no_room = true;
      break;
    }
    const std::vector<uint8_t> message(in.begin() + static_cast<long>(used + 2),
                                       in.begin() + static_cast<long>(used + 2 + length));
    used += 2 + length;
    handle_query(c->second.attachment, message,
                 ClientRef{.tcp = true, .udp_fd = -1, .peer = {}, .tcp_client = id});
    c = clients_.find(id);
    if (c == clients_.end()) return;
  }
  TcpClient& client = c->second;
  client.in.erase(client.in.begin(), client.in.begin() + static_cast<long>(used));
  client.held_back = no_room || !has_room(client);
  if (no_room && !client.waiting_room) {
    client.waiting_room = true;
    wait_for_room(client.attachment, -1, id);
  }
  if (client.sent_all && !no_room && client.inflight == 0 && client.out.empty()) {
    close_client(id);  // all answered; an incomplete last query never will be
    return;
  }
  watch_client(client);
}

void DnsProxy::Loop::watch_client(const TcpClient& client) {
  rewatch(client.fd.get(), (client.held_back || client.sent_all ? 0u : uint32_t{EPOLLIN}) |
                               (client.out.empty() ? 0u : uint32_t{EPOLLOUT}));
}

void DnsProxy::Loop::client_progressed(TcpClient& client, uint64_t id) {
  if (client.held_back || client.sent_all) resume_.push_back(id);
}

void DnsProxy::Loop::resume_clients() {
  std::vector<uint64_t> ids;
  ids.swap(resume_);
  for (const uint64_t id : ids) serve_client(id);
}

void DnsProxy::Loop::flush_client(uint64_t id) {
  auto c = clients_.find(id);
  if (c == clients_.end()) return;
  TcpClient& client = c->second;
  size_t written = 0;
  while (written < client.out.size()) {
    const ssize_t n = ::send(client.fd.get(), client.out.data() + written,
                             client.out.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      close_client(id);
      return;
    }
    written += static_cast<size_t>(n);
  }
  if (written > 0) {
    client.out.erase(client.out.begin(), client.out.begin() + static_cast<long>(written));
    client.idle_deadline = Clock::now() + config_.tcp_idle_timeout;
    client_progressed(client, id);
  }
  watch_client(client);
}

void DnsProxy::Loop::reply(const ClientRef& client, const Query* query,
                           std::vector<uint8_t> response) {
  if (response.empty()) return;
  if (!client.tcp) {
    if (query != nullptr && response.size() > client_udp_size(*query)) {
      auto cut = fit_for_udp(response, client_udp_size(*query));
      if (!cut.ok()) return;
      response = std::move(*cut);
    }
    Datagram& d = outbox_.emplace_back();
    d.fd = client.udp_fd;
    d.to_length = client.peer.to_sockaddr(d.to);
    d.bytes = std::move(response);
    return;
  }
  auto c = clients_.find(client.tcp_client);
  if (c == clients_.end()) return;  // the client went away meanwhile
  auto& out = c->second.out;
  out.push_back(static_cast<uint8_t>(response.size() >> 8));
  out.push_back(static_cast<uint8_t>(response.size()));
  out.insert(out.end(), response.begin(), response.end());
  recycle(std::move(response));
  flush_client(client.tcp_client);
}

const NamePolicy* DnsProxy::Loop::name_policy(uint64_t attachment) {
  const uint64_t generation = backend_.policy_generation();
  if (generation != policies_generation_) {
    policies_.clear();
    policies_generation_ = generation;
  }
  if (auto it = policies_.find(attachment); it != policies_.end()) return it->second.get();
  auto fetched = backend_.name_policy(attachment);
  if (!fetched) return nullptr;
  return policies_.emplace(attachment, std::move(fetched)).first->second.get();
}

void DnsProxy::Loop::handle_query(uint64_t attachment, std::span<const uint8_t> wire,
                                  const ClientRef& client) {
  auto ep = endpoints_.find(attachment);
  if (ep == endpoints_.end()) return;
  Endpoint& endpoint = *ep->second;
  // The query's place in the in-flight count, given back on every way out
  // but upstream.
  struct Place {
    std::atomic<uint32_t>* held;
    ~Place() {
      if (held != nullptr) held->fetch_sub(1);
    }
  } place{&endpoint.inflight};
  count(endpoint, Count::kQueries);
  // Over the rate, a datagram is dropped: answering a flood would amplify
  // it, and its source may be forged. A TCP client is who it says it is
  // and waits for each of its answers: it gets SERVFAIL (below).
  const bool over_rate = !take_token(endpoint);
  if (over_rate && !client.tcp) {
    count(endpoint, Count::kRateLimited);
    return;
  }
  auto query = parse_query(wire);
  if (query.ok() && over_rate) {
    count(endpoint, Count::kRateLimited);
    reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
    return;
  }
  if (!query.ok()) {
    count(endpoint, Count::kMalformed);
    const uint16_t code =
        query.error().code() == Errc::kUnsupported ? rcode::kNotImp : rcode::kFormErr;
    // Never answer something that is itself a response: two endpoints
    // (or a spoofed source) could otherwise bounce messages forever.
    if (wire.size() >= kHeaderSize && (wire[2] & 0x80) == 0) {
      reply(client, nullptr, make_header_response(wire, code));
    }
    return;
  }
  const NamePolicy* policy = name_policy(attachment);
  if (policy == nullptr) return;  // being detached
  const QueryVerdict verdict = judge_query(*policy, query->question.name);
  if (verdict == QueryVerdict::kRefuse) {
    count(endpoint, Count::kRefused);
    reply(client, &*query, make_error_response(*query, wire, config_.refusal_rcode));
    return;
  }
  if (config_.upstreams.empty()) {
    count(endpoint, Count::kServfail);
    reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
    return;
  }
  auto tcp_client = clients_.find(client.tcp_client);
  if (client.tcp && tcp_client == clients_.end()) return;
  if (!within_upstream_budget(endpoint)) {
    count(endpoint, Count::kRateLimited);
    reply(client, &*query, make_error_response(*query, wire, rcode::kServFail));
    return;
  }
  if (client.tcp) tcp_client->second.inflight++;
  const uint64_t id = next_id_++;
  Pending& p = new_pending(id);
  p.attachment = attachment;
  p.client = client;
  p.query = std::move(*query);
  p.verdict = verdict;
  p.policy_generation = policies_generation_;
  make_upstream_query(p.query, wire, p.wire);
  p.upstream = 0;
  p.attempts_left = std::max<size_t>(2, config_.upstreams.size());
  // A client over TCP wants what does not fit in UDP: ask over TCP.
  p.upstream_tcp = client.tcp;
  count(endpoint, Count::kForwarded);
  place.held = nullptr;  // the query's until finish()
  send_upstream(id);
}

}  // namespace sebpf::dns
