#include "dns/upstream_query.h"

#include <algorithm>

namespace sebpf::dns {

void make_upstream_query(const Query& query, std::span<const uint8_t> wire,
                         std::vector<uint8_t>& out) {
  constexpr uint8_t kRd = 0x01;        // in the header's third byte
  constexpr uint8_t kAdAndCd = 0x30;   // in its fourth
  constexpr uint8_t kDnssecOk = 0x80;  // in the OPT record's flags, high byte
  const bool opt = query.edns.has_value();
  out.assign(wire.begin(), wire.begin() + static_cast<long>(query.question_end));
  out[2] = wire[2] & kRd;  // QR 0, opcode QUERY, AA and TC clear
  out[3] = wire[3] & kAdAndCd;
  const uint8_t counts[8] = {0, 1, 0, 0, 0, 0, 0, static_cast<uint8_t>(opt ? 1 : 0)};
  std::copy(std::begin(counts), std::end(counts), out.begin() + 4);
  if (!opt) return;
  const Edns& edns = *query.edns;
  const uint8_t record[] = {0,  // root owner
                            0,
                            static_cast<uint8_t>(type::kOpt),
                            static_cast<uint8_t>(edns.udp_size >> 8),
                            static_cast<uint8_t>(edns.udp_size),
                            0,  // extended rcode
                            edns.version,
                            static_cast<uint8_t>(edns.dnssec_ok ? kDnssecOk : 0),
                            0,
                            0,  // no options
                            0};
  out.insert(out.end(), std::begin(record), std::end(record));
}

}  // namespace sebpf::dns
