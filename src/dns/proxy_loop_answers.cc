#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "dns/proxy_loop.h"
#include "dns/response.h"

namespace sebpf::dns {

void DnsProxy::Loop::upstream_udp_ready(uint64_t serial) {
  for (int read = 0; read < kReadBurst;) {
    auto sock = upstream_sockets_.find(serial);
    if (sock == upstream_sockets_.end()) return;
    const int n = recv_batch_.receive(sock->second.fd.get());
    if (n == 0) return;
    if (n < 0) {
      // An ICMP error (port unreachable): that upstream is not there.
      // Every query waiting on this socket went to it; try the next.
      backend_.report(
          "dns_upstream_unreachable", 0,
          config_.upstreams[sock->second.upstream].to_string() + ": " + errno_text(errno));
      std::vector<uint64_t> failed;
      for (const auto& [key, pending] : waiting_) {
        if (key >> 16 == serial) failed.push_back(pending);
      }
      for (uint64_t pending : failed) next_upstream(pending);
      ++read;
      continue;
    }
    for (int i = 0; i < n; ++i) {
      const std::span<uint8_t> answer = recv_batch_.message(i);
      if (answer.size() < kHeaderSize || recv_batch_.truncated(i)) continue;
      const auto waiter =
          waiting_.find(wait_key(serial, static_cast<uint16_t>(answer[0] << 8 | answer[1])));
      if (waiter == waiting_.end()) continue;  // late, or not ours
      try_answer(waiter->second, answer);
    }
    if (static_cast<unsigned>(n) < ReceiveBatch::kSize) return;
    read += n;
  }
}

bool DnsProxy::Loop::try_answer(uint64_t id, std::span<uint8_t> answer) {
  Pending& p = pending_.at(id);
  auto message = parse_message(answer);
  if (!message.ok() || !message->header.qr || message->header.id != p.upstream_id ||
      message->questions.size() != 1 || message->questions[0].name != p.query.question.name ||
      message->questions[0].type != p.query.question.type ||
      message->questions[0].klass != p.query.question.klass) {
    return false;
  }
  release(finish(id), *message, answer);
  return true;
}

void DnsProxy::Loop::release(PendingEntry entry, const Message& message,
                             std::span<uint8_t> answer) {
  Pending& p = entry.mapped();
  const auto done = [&](std::vector<uint8_t> response) {
    reply_to(p, std::move(response));
    recycle(std::move(entry));
  };
  const auto refuse = [&](uint16_t code) { done(error_response(p, code)); };
  const NamePolicy* policy = name_policy(p.attachment);
  if (policy == nullptr) {  // being detached
    done({});
    return;
  }
  const QueryVerdict verdict = policies_generation_ == p.policy_generation
                                   ? p.verdict
                                   : judge_query(*policy, p.query.question.name);
  if (verdict == QueryVerdict::kRefuse) {
    count(p.attachment, Count::kRefused);
    refuse(config_.refusal_rcode);
    return;
  }
  if (verdict == QueryVerdict::kResolve) {
    auto learned = addresses_for(message, p.query.question.name);
    if (!learned.ok()) {
      backend_.report("dns_answer_unusable", p.attachment, learned.error().message());
      count(p.attachment, Count::kServfail);
      refuse(rcode::kServFail);
      return;
    }
    for (size_t i = 1; i < learned->chain.size(); ++i) {
      if (chain_name_denied(*policy, learned->chain[i])) {
        count(p.attachment, Count::kRefused);
        refuse(config_.refusal_rcode);
        return;
      }
    }
    for (LearnedAddress& a : learned->addresses) {
      a.ttl = std::clamp(a.ttl, config_.min_ttl, config_.max_ttl);
    }
    if (!learned->addresses.empty()) {
      cap_ttls(answer, message, config_.max_ttl);
      put_id(answer, p.query.header.id);
      encode_chain(learned->chain, p.chain);
      p.policy_generation = policies_generation_;  // what judged it just now
      learning_.push_back({std::move(entry), new_buffer(answer), std::move(learned->addresses)});
      return;
    }
  }
  cap_ttls(answer, message, config_.max_ttl);
  put_id(answer, p.query.header.id);
  count(p.attachment, Count::kAnswered);
  done(new_buffer(answer));
}

void DnsProxy::Loop::learn_and_release() {
  std::vector<Learning>& batch = learning_turn_;
  batch.swap(learning_);  // keeps both vectors' capacity from turn to turn
  const auto by_attachment = [](const Learning& a, const Learning& b) {
    return a.query().attachment < b.query().attachment;
  };
  // Usually all of one attachment: then there is nothing to move.
  if (!std::is_sorted(batch.begin(), batch.end(), by_attachment)) {
    std::stable_sort(batch.begin(), batch.end(), by_attachment);
  }
  for (size_t first = 0; first < batch.size();) {
    size_t end = first + 1;
    while (end < batch.size() && batch[end].query().attachment == batch[first].query().attachment) {
      ++end;
    }
    learn_and_release(std::span(batch).subspan(first, end - first));
    first = end;
  }
  batch.clear();
}

void DnsProxy::Loop::learn_and_release(std::span<Learning> answers) {
  const uint64_t attachment = answers.front().query().attachment;
  Result<LearnOutcome> learned = learn_all(answers);
  for (int judged = 1; learned.ok() && *learned == LearnOutcome::kPolicyChanged; ++judged) {
    if (judged == kMaxJudgements) {
      learned = Error(Errc::kUnavailable, "the policy changed under every attempt to learn");
      break;
    }
    answers = answers.first(judge_again(answers));
    if (answers.empty()) return;
    learned = learn_all(answers);
  }
  const auto ep = endpoints_.find(attachment);
  CountSlot* counts = ep == endpoints_.end() ? nullptr : &slot(*ep->second);
  if (!learned.ok()) backend_.report("dns_learn_failed", attachment, learned.error().message());
  for (Learning& l : answers) {
    // The write failed (a full table, the attachment's share used up):
    // perhaps because of another answer's hosts. Each answer is then
    // learned alone, so that only those that do not fit are refused.
    const auto held = [](const Result<LearnOutcome>& r) {
      return r.ok() && *r == LearnOutcome::kHeld;
    };
    const bool ok = held(learned) ||
                    (answers.size() > 1 &&
                     held(backend_.learn(attachment, l.addresses, l.query().policy_generation)));
    if (ok) {
      if (counts) {
        counts->add(Count::kAnswered, 1);
        counts->add(Count::kAnswerAddresses, l.addresses.size());
      }
      reply_to(l.query(), std::move(l.answer));
    } else {
      if (counts) counts->add(Count::kServfail, 1);
      reply_to(l.query(), error_response(l.query(), rcode::kServFail));
      recycle(std::move(l.answer));
    }
    recycle(std::move(l.entry));
  }
}

Result<LearnOutcome> DnsProxy::Loop::learn_all(std::span<Learning> answers) {
  std::vector<LearnedAddress>& addresses = learn_scratch_;
  addresses.clear();
  uint64_t judged_at = answers.front().query().policy_generation;
  for (Learning& l : answers) {
    for (LearnedAddress& a : l.addresses) a.chain = l.query().chain;
    addresses.insert(addresses.end(), l.addresses.begin(), l.addresses.end());
    judged_at = std::min(judged_at, l.query().policy_generation);
  }
  return backend_.learn(answers.front().query().attachment, addresses, judged_at);
}

size_t DnsProxy::Loop::judge_again(std::span<Learning> answers) {
  size_t kept = 0;
  for (Learning& l : answers) {
    const NamePolicy* policy = name_policy(l.query().attachment);
    const auto done = [&](std::vector<uint8_t> response) {
      reply_to(l.query(), std::move(response));
      recycle(std::move(l.answer));
      recycle(std::move(l.entry));
    };
    if (policy == nullptr) {  // being detached
      done({});
      continue;
    }
    if (answer_refused(*policy, decode_chain(l.query().chain))) {
      count(l.query().attachment, Count::kRefused);
      done(error_response(l.query(), config_.refusal_rcode));
      continue;
    }
    l.query().policy_generation = policies_generation_;
    if (&answers[kept] != &l) answers[kept] = std::move(l);
    ++kept;
  }
  return kept;
}

}  // namespace sebpf::dns
