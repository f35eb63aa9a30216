#include "dns/proxy_loop.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <utility>

namespace sebpf::dns {

Status DnsProxy::Loop::init() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return Error::from_errno(errno, "epoll_create1");
  wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return Error::from_errno(errno, "eventfd");
  SEBPF_RETURN_IF_ERROR(watch(wake_.get(), EPOLLIN, {Kind::kWake, 0}));
  thread_ = std::thread([this] { run(); });
  // Named, so that top -H, perf and the tests can tell the loops apart.
  pthread_setname_np(thread_.native_handle(), "sebpf-dns");
  return ok_status();
}

DnsProxy::Loop::~Loop() {
  if (!thread_.joinable()) return;
  post([this] { stopping_ = true; });
  thread_.join();
}

void DnsProxy::Loop::post(std::function<void()> task) {
  {
    std::lock_guard lock(tasks_mu_);
    tasks_.push_back(std::move(task));
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void DnsProxy::Loop::open_endpoint(std::shared_ptr<Endpoint> endpoint) {
  post([this, endpoint = std::move(endpoint)]() mutable { serve(std::move(endpoint)); });
}

void DnsProxy::Loop::close_endpoint(uint64_t attachment) {
  post([this, attachment] { let_go(attachment, nullptr); });
}

void DnsProxy::Loop::move_endpoint(std::shared_ptr<Endpoint> endpoint) {
  post([this, endpoint = std::move(endpoint)]() mutable {
    let_go(endpoint->attachment, endpoint.get());
    serve(std::move(endpoint));
  });
}

void DnsProxy::Loop::serve(std::shared_ptr<Endpoint> endpoint) {
  const uint64_t attachment = endpoint->attachment;
  for (const auto* fds : {&endpoint->udp, &endpoint->tcp}) {
    const Kind kind = fds == &endpoint->udp ? Kind::kEndpointUdp : Kind::kEndpointTcp;
    for (const UniqueFd& fd : *fds) {
      if (auto s = watch(fd.get(), EPOLLIN | EPOLLEXCLUSIVE, {kind, attachment}); !s.ok()) {
        backend_.report("dns_endpoint_failed", attachment, s.error().message());
      }
    }
  }
  endpoints_[attachment] = std::move(endpoint);
}

namespace {

// What of an endpoint the one it moves to keeps: its UDP sockets (the
// successor holds a duplicate of each), each descriptor with the
// duplicate's, and their addresses, whose TCP listeners are kept too.
struct KeptSockets {
  std::map<int, int> udp;
  std::vector<net::SocketAddress> addresses;
};

KeptSockets kept_sockets(const Endpoint& from, const Endpoint& to) {
  const auto identity = [](const UniqueFd& fd) -> std::optional<std::pair<dev_t, ino_t>> {
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return std::nullopt;
    return std::pair(st.st_dev, st.st_ino);
  };
  KeptSockets kept;
  for (const UniqueFd& old_fd : from.udp) {
    const auto old_identity = identity(old_fd);
    for (size_t i = 0; i < to.udp.size() && old_identity; ++i) {
      if (identity(to.udp[i]) != old_identity) continue;
      kept.udp[old_fd.get()] = to.udp[i].get();
      kept.addresses.push_back(to.addresses[i]);
    }
  }
  return kept;
}

// Whether a TCP client's connection came in on one of `addresses`.
bool connected_to_one_of(int fd, const std::vector<net::SocketAddress>& addresses) {
  sockaddr_storage ss{};
  socklen_t length = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &length) != 0) return false;
  const auto local = net::SocketAddress::from_sockaddr(ss, length);
  return local.ok() && std::find(addresses.begin(), addresses.end(), *local) != addresses.end();
}

}  // namespace

void DnsProxy::Loop::let_go(uint64_t attachment, Endpoint* successor) {
  auto it = endpoints_.find(attachment);
  if (it == endpoints_.end()) return;
  const KeptSockets kept =
      successor != nullptr ? kept_sockets(*it->second, *successor) : KeptSockets{};
  unwatch_endpoint(*it->second);
  // Let go of at the end of this turn (the sockets close when every
  // loop has): replies queued for its clients meanwhile must not go
  // out through a reused descriptor number.
  closing_.push_back(std::move(it->second));
  endpoints_.erase(it);
  // What came in on an address the successor keeps goes on there: TCP
  // clients, and the queries in flight (answered through the socket they
  // came in on, and counted in the successor's in-flight number). The
  // rest is dropped, and its clients ask again.
  uint32_t clients_carried = 0;
  for (auto c = clients_.begin(); c != clients_.end();) {
    if (c->second.attachment != attachment) {
      ++c;
    } else if (connected_to_one_of(c->second.fd.get(), kept.addresses)) {
      ++clients_carried;
      ++c;
    } else {
      unwatch(c->second.fd.get());
      c = clients_.erase(c);
    }
  }
  uint32_t queries_carried = 0;
  for (auto p = pending_.begin(); p != pending_.end();) {
    if (p->second.attachment != attachment) {
      ++p;
      continue;
    }
    ClientRef& client = p->second.client;
    const auto socket = client.tcp ? kept.udp.end() : kept.udp.find(client.udp_fd);
    if (socket != kept.udp.end()) client.udp_fd = socket->second;
    if (socket != kept.udp.end() || (client.tcp && clients_.contains(client.tcp_client))) {
      ++queries_carried;
      ++p;
      continue;
    }
    leave_upstream(p->second);
    p = pending_.erase(p);
  }
  if (successor != nullptr) {
    successor->inflight += queries_carried;
    successor->tcp_clients += clients_carried;
  }
}

void DnsProxy::Loop::drain() {
  post([this] {
    draining_ = true;
    for (const auto& [attachment, endpoint] : endpoints_) unwatch_endpoint(*endpoint);
    paused_.clear();        // listeners it would watch again
    room_waiters_.clear();  // and sockets and clients waiting for room
  });
}

Status DnsProxy::Loop::watch(int fd, uint32_t events, Ref ref) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    return Error::from_errno(errno, "epoll_ctl add");
  refs_[fd] = ref;
  return ok_status();
}

void DnsProxy::Loop::rewatch(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void DnsProxy::Loop::unwatch(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  refs_.erase(fd);
}

void DnsProxy::Loop::unwatch_endpoint(const Endpoint& endpoint) {
  for (const auto* fds : {&endpoint.udp, &endpoint.tcp}) {
    for (const UniqueFd& fd : *fds) unwatch(fd.get());
  }
}

void DnsProxy::Loop::run() {
  std::vector<epoll_event> events(256);
  // A turn answers what it learned and flushes what it queued: with nothing
  // pending after one, a draining loop owes its clients nothing.
  while (!stopping_ && !(draining_ && pending_.empty())) {
    const int timeout = next_timeout_ms();
    int n = timeout == 0 ? 0 : spin_for_answers(events);
    if (n == 0) {
      const Clock::time_point asleep = Clock::now();
      n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
      earn_spin(Clock::now() - asleep);
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<size_t>(i)].data.fd;
      const auto ref = refs_.find(fd);
      if (ref == refs_.end()) continue;  // closed by an earlier event of this batch
      dispatch(fd, ref->second, events[static_cast<size_t>(i)].events);
    }
    fire_timers();
    // Answers and writes make room for held-back TCP clients, whose
    // queries then go out in this turn's datagrams, whose failures may
    // answer more.
    do {
      learn_and_release();
      if (!draining_) take_up_room();
      resume_clients();
      flush_datagrams();
    } while (!resume_.empty());
    closing_.clear();
  }
  ended_.set_value();
}

void DnsProxy::Loop::dispatch(int fd, Ref ref, uint32_t events) {
  switch (ref.kind) {
    case Kind::kWake:
      run_tasks();
      break;
    case Kind::kEndpointUdp:
      read_udp_queries(fd, ref.id);
      break;
    case Kind::kEndpointTcp:
      accept_clients(fd, ref.id);
      break;
    case Kind::kTcpClient:
      client_ready(ref.id, events);
      break;
    case Kind::kUpstreamTcp:
      stream_ready(ref.id, events);
      break;
    case Kind::kUpstreamUdp:
      upstream_udp_ready(ref.id);
      break;
  }
}

void DnsProxy::Loop::run_tasks() {
  uint64_t value;
  (void)!::read(wake_.get(), &value, sizeof value);
  std::deque<std::function<void()>> tasks;
  {
    std::lock_guard lock(tasks_mu_);
    tasks.swap(tasks_);
  }
  for (auto& task : tasks) task();
}

void DnsProxy::Loop::earn_spin(Clock::duration slept) {
  spin_budget_ =
      std::min(spin_budget_ + slept / kSpinShare, Clock::duration(config_.answer_spin * kSpinBank));
}

int DnsProxy::Loop::spin_for_answers(std::span<epoll_event> events) {
  if (waiting_.empty() || waiting_.size() > kSpinMaxWaiting || config_.answer_spin.count() == 0 ||
      spin_budget_ <= Clock::duration::zero()) {
    return 0;
  }
  const Clock::time_point start = Clock::now();
  const Clock::time_point answers_due = queries_sent_at_ + config_.answer_spin;
  const Clock::time_point until = std::min(answers_due, start + spin_budget_);
  if (start >= until) return 0;
  if (spins_missed_ >= kSpinMisses && ++spins_skipped_ % kSpinProbe != 0) return 0;
  int n = 0;
  Clock::time_point now;
  do {
    n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 0);
    now = Clock::now();
  } while (n == 0 && now < until);
  spin_budget_ -= now - start;
  if (n > 0) {
    spins_missed_ = 0;
  } else if (until == answers_due) {  // not cut short by the budget: a slow upstream
    spins_missed_ = std::min(spins_missed_ + 1, kSpinMisses);
  }
  return std::max(n, 0);
}

int DnsProxy::Loop::next_timeout_ms() {
  while (!upstream_deadlines_.empty()) {
    const auto& [when, id] = upstream_deadlines_.front();
    const auto p = pending_.find(id);
    if (p != pending_.end() && p->second.deadline == when) break;
    upstream_deadlines_.pop_front();
  }
  while (!client_deadlines_.empty()) {
    const auto [when, id] = client_deadlines_.top();
    const auto c = clients_.find(id);
    if (c != clients_.end() && c->second.idle_deadline == when) break;
    client_deadlines_.pop();
    if (c != clients_.end()) client_deadlines_.emplace(c->second.idle_deadline, id);
  }
  std::optional<Clock::time_point> first;
  if (!upstream_deadlines_.empty()) first = upstream_deadlines_.front().first;
  if (!client_deadlines_.empty() && (!first || client_deadlines_.top().first < *first)) {
    first = client_deadlines_.top().first;
  }
  if (!paused_.empty() && (!first || paused_.front().until < *first)) {
    first = paused_.front().until;
  }
  if (!room_waiters_.empty() && (!first || room_recheck_ < *first)) first = room_recheck_;
  if (!first) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*first - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void DnsProxy::Loop::fire_timers() {
  const auto now = Clock::now();
  resume_listeners(now);
  while (!upstream_deadlines_.empty() && upstream_deadlines_.front().first <= now) {
    const uint64_t id = upstream_deadlines_.front().second;
    upstream_deadlines_.pop_front();
    auto p = pending_.find(id);
    if (p != pending_.end() && p->second.deadline <= now) {
      backend_.report("dns_upstream_timeout", p->second.attachment,
                      config_.upstreams[p->second.upstream].to_string());
      upstream_timed_out(id, now);
    }
  }
  while (!client_deadlines_.empty() && client_deadlines_.top().first <= now) {
    const uint64_t id = client_deadlines_.top().second;
    client_deadlines_.pop();
    auto c = clients_.find(id);
    if (c == clients_.end()) continue;
    if (c->second.idle_deadline <= now && c->second.inflight == 0) {
      close_client(id);
      continue;
    }
    // Still busy, or waiting for answers: not idle.
    if (c->second.idle_deadline <= now) c->second.idle_deadline = now + config_.tcp_idle_timeout;
    client_deadlines_.emplace(c->second.idle_deadline, id);
  }
}

}  // namespace sebpf::dns
