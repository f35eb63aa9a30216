#include "dns/response.h"

namespace sebpf::dns {
namespace {

void put16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

void append_opt(std::vector<uint8_t>& out) {
  const uint8_t opt[] = {0,  // root owner
                         0,
                         static_cast<uint8_t>(type::kOpt),  // type
                         kOurUdpSize >> 8,
                         kOurUdpSize & 0xff,  // our UDP size
                         0,
                         0,
                         0,
                         0,  // ext rcode, version, flags
                         0,
                         0};  // no options
  out.insert(out.end(), std::begin(opt), std::end(opt));
}

// Header and question of `wire` (question_end bytes), as a response with
// no records: QR and RA set, TC and rcode as given, counts reset.
std::vector<uint8_t> bare_response(std::span<const uint8_t> wire, size_t question_end,
                                   uint16_t qdcount, bool tc, uint16_t rcode, bool opt) {
  std::vector<uint8_t> out(wire.begin(), wire.begin() + static_cast<long>(question_end));
  const uint16_t flags = static_cast<uint16_t>(wire[2] << 8 | wire[3]);
  // Keep opcode and RD; set QR and RA; AA, TC, AD, CD and rcode as ours.
  uint16_t out_flags = static_cast<uint16_t>((flags & 0x7900) | 0x8000 | 0x0080 | (rcode & 0xf));
  if (tc) out_flags |= 0x0200;
  put16(out, 2, out_flags);
  put16(out, 4, qdcount);
  put16(out, 6, 0);
  put16(out, 8, 0);
  put16(out, 10, opt ? 1 : 0);
  if (opt) append_opt(out);
  return out;
}

}  // namespace

std::vector<uint8_t> make_error_response(const Query& query, std::span<const uint8_t> wire,
                                         uint16_t rcode) {
  return bare_response(wire, query.question_end, 1, false, rcode, query.edns.has_value());
}

std::vector<uint8_t> make_header_response(std::span<const uint8_t> wire, uint16_t rcode) {
  if (wire.size() < kHeaderSize) return {};
  return bare_response(wire, kHeaderSize, 0, false, rcode, false);
}

void cap_ttls(std::span<uint8_t> wire, const Message& message, uint32_t max_ttl) {
  for (const auto* section : {&message.answers, &message.authority, &message.additional}) {
    for (const Record& rec : *section) {
      if (rec.ttl <= max_ttl || rec.ttl_offset + 4 > wire.size()) continue;
      wire[rec.ttl_offset] = static_cast<uint8_t>(max_ttl >> 24);
      wire[rec.ttl_offset + 1] = static_cast<uint8_t>(max_ttl >> 16);
      wire[rec.ttl_offset + 2] = static_cast<uint8_t>(max_ttl >> 8);
      wire[rec.ttl_offset + 3] = static_cast<uint8_t>(max_ttl);
    }
  }
}

Result<std::vector<uint8_t>> fit_for_udp(std::span<const uint8_t> response, size_t max_size) {
  if (response.size() <= max_size) return std::vector<uint8_t>(response.begin(), response.end());
  SEBPF_ASSIGN_OR_RETURN(Message m, parse_message(response));
  const auto rcode = static_cast<uint16_t>(m.header.rcode & 0xf);
  std::vector<uint8_t> cut =
      bare_response(response, m.question_end, m.header.qdcount, true, rcode, m.edns.has_value());
  // A question may be a compression pointer to bytes that, read as labels,
  // run past the question section (only a hostile upstream writes that):
  // cut off from them it does not parse, so it is left out.
  if (!parse_message(cut).ok()) {
    cut = bare_response(response, kHeaderSize, 0, true, rcode, m.edns.has_value());
  }
  return cut;
}

}  // namespace sebpf::dns
