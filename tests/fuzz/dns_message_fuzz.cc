// Arbitrary bytes as a DNS message, from a client or an upstream: parsing
// never crashes or reads out of bounds; what parses yields printable names;
// the responses and upstream queries built from it parse back (a query
// sent upstream as the same question, EDNS and all); every address it teaches is a
// valid host rule; errors are printable and blame the input.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dns/answer_addresses.h"
#include "dns/message.h"
#include "dns/response.h"
#include "dns/upstream_query.h"

namespace {

using namespace sebpf::dns;

void check(bool ok) {
  if (!ok) std::abort();
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

void check_error(const sebpf::Error& e) {
  check(e.code() == sebpf::Errc::kInvalidArgument || e.code() == sebpf::Errc::kUnsupported);
  const std::string& m = e.message();
  check(!m.empty() &&
        std::all_of(m.begin(), m.end(), [](char c) { return c >= 0x20 && c < 0x7f; }));
}

void fuzz_message(std::span<const uint8_t> wire) {
  auto m = parse_message(wire);
  if (!m.ok()) {
    check_error(m.error());
    return;
  }
  check(m->question_end <= wire.size());
  for (const Question& q : m->questions) check(q.name.empty() || printable(q.name));
  for (const Record& r : m->answers) {
    check(r.name.empty() || printable(r.name));
    check(r.target.empty() || printable(r.target));
  }
  if (!m->questions.empty()) {
    auto learned = addresses_for(*m, m->questions[0].name);
    if (learned.ok()) {
      check(learned->chain.size() <= kMaxCnameChain + 1);
      // Every address an answer teaches becomes a host rule: it must be
      // one the filter accepts (an IPv4-mapped AAAA once was not).
      for (const LearnedAddress& a : learned->addresses) {
        check(sebpf::net::IpPrefix::make(a.address, a.address.max_prefix_length()).ok());
      }
    } else {
      check_error(learned.error());
    }
  }
  const size_t limit = wire.size() / 2;
  auto cut = fit_for_udp(wire, limit);
  check(cut.ok());
  if (wire.size() > limit) {
    auto reparsed = parse_message(*cut);
    check(reparsed.ok() && reparsed->header.tc && reparsed->answers.empty());
  }
}

void fuzz_query(std::span<const uint8_t> wire) {
  auto q = parse_query(wire);
  if (!q.ok()) {
    check_error(q.error());
    const auto formerr = make_header_response(wire, rcode::kFormErr);
    if (!formerr.empty()) check(parse_message(formerr).ok());
    return;
  }
  check(client_udp_size(*q) >= kClassicUdpSize);
  auto refused = parse_message(make_error_response(*q, wire, rcode::kRefused));
  check(refused.ok());
  check(refused->header.id == q->header.id && refused->header.rcode == rcode::kRefused);
  check(refused->questions.size() == 1 && refused->questions[0].name == q->question.name);
  std::vector<uint8_t> upstream;
  make_upstream_query(*q, wire, upstream);
  auto sent = parse_query(upstream);
  check(sent.ok());
  check(sent->header.id == q->header.id && sent->header.rd == q->header.rd);
  check(sent->question.name == q->question.name && sent->question.type == q->question.type &&
        sent->question.klass == q->question.klass);
  check(sent->edns.has_value() == q->edns.has_value());
  if (q->edns) {
    check(sent->edns->udp_size == q->edns->udp_size && sent->edns->version == q->edns->version &&
          sent->edns->dnssec_ok == q->edns->dnssec_ok);
  }
  check(upstream.size() <= q->question_end + 11);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> wire(data, size);
  fuzz_message(wire);
  fuzz_query(wire);
  return 0;
}
