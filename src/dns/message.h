// DNS messages (RFC 1035, 3596, 6891) parsed from untrusted bytes: every
// read is bounds-checked, compression pointers must point backwards (so no
// loop is possible), names are at most 255 octets and labels 63, counts are
// never trusted for allocation. Errors say what is wrong at which offset.
//
// Our own parser rather than a library: libknot is GPL-3 and ldns accepts
// what a filter must refuse; what we need (header, question, A/AAAA/CNAME,
// OPT) is small. bench/dns_message_bench.cc measures it; the fuzz target
// tests/fuzz/dns_message_fuzz.cc runs on CI.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/container/inlined_vector.h"
#include "common/result.h"
#include "dns/name.h"
#include "net/ip_prefix.h"

namespace sebpf::dns {

namespace type {
inline constexpr uint16_t kA = 1;
inline constexpr uint16_t kCname = 5;
inline constexpr uint16_t kAaaa = 28;
inline constexpr uint16_t kOpt = 41;
inline constexpr uint16_t kIxfr = 251;
inline constexpr uint16_t kAxfr = 252;
}  // namespace type

inline constexpr uint16_t kClassIn = 1;

namespace rcode {
inline constexpr uint16_t kNoError = 0;
inline constexpr uint16_t kFormErr = 1;
inline constexpr uint16_t kServFail = 2;
inline constexpr uint16_t kNxDomain = 3;
inline constexpr uint16_t kNotImp = 4;
inline constexpr uint16_t kRefused = 5;
}  // namespace rcode

inline constexpr size_t kHeaderSize = 12;
// What a client without EDNS may receive over UDP (RFC 1035 4.2.1).
inline constexpr uint16_t kClassicUdpSize = 512;

struct Header {
  uint16_t id = 0;
  bool qr = false;
  uint8_t opcode = 0;
  bool aa = false, tc = false, rd = false, ra = false;
  uint16_t rcode = 0;  // with the OPT record's extended bits, when there is one
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
};

struct Question {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
};

struct Edns {
  uint16_t udp_size = 0;  // what the sender can receive
  uint8_t version = 0;
  bool dnssec_ok = false;
};

struct Record {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t ttl_offset = 0;                  // where the TTL is in the wire form
  std::optional<net::IpAddress> address;  // A and AAAA
  Name target;                            // CNAME
};

// Room for the records of a typical answer without a heap allocation: the
// proxy parses every answer it forwards.
using Records = absl::InlinedVector<Record, 4>;

struct Message {
  Header header;
  absl::InlinedVector<Question, 1> questions;
  Records answers, authority, additional;  // OPT is not among them
  std::optional<Edns> edns;
  size_t question_end = kHeaderSize;  // offset just past the question section
};

// Any message. A malformed one is Errc::kInvalidArgument.
Result<Message> parse_message(std::span<const uint8_t> wire);

// What the proxy accepts from a client: a standard query (QR 0, opcode
// QUERY) with exactly one question, no answer or authority records, and in
// the additional section at most an OPT record. Errc::kUnsupported for
// another opcode or a zone transfer (AXFR, IXFR: answer NOTIMP),
// Errc::kInvalidArgument for anything else wrong (answer FORMERR).
struct Query {
  Header header;
  Question question;
  std::optional<Edns> edns;
  size_t question_end = kHeaderSize;
};
Result<Query> parse_query(std::span<const uint8_t> wire);

// The largest UDP response this client accepts (RFC 6891 6.2.5: at least 512).
uint16_t client_udp_size(const Query& query);

}  // namespace sebpf::dns
