// Packets the verdict tests send: from the workload's address (192.0.2.2,
// 2001:db8::2) to `dst`, and the peer's answer to one.
#pragma once

#include <cstdint>
#include <utility>

#include "program_fixture.h"

namespace sebpf::testing {

inline PacketSpec tcp4(const char* dst, uint16_t dport = 443) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kTcp, .dport = dport};
}
inline PacketSpec udp4(const char* dst, uint16_t dport = 5000) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kUdp, .dport = dport};
}
inline PacketSpec icmp4(const char* dst) {
  return {.src = "192.0.2.2", .dst = dst, .l4 = L4::kIcmp, .icmp_type = 8};
}
inline PacketSpec tcp6(const char* dst, uint16_t dport = 443) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kTcp, .dport = dport};
}
inline PacketSpec udp6(const char* dst, uint16_t dport = 5000) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kUdp, .dport = dport};
}
inline PacketSpec icmp6(const char* dst) {
  return {.src = "2001:db8::2", .dst = dst, .l4 = L4::kIcmpv6, .icmp_type = 128};
}

// The peer's answer to a datagram the workload sent.
inline PacketSpec answer_to(const PacketSpec& sent) {
  PacketSpec answer = sent;
  std::swap(answer.src, answer.dst);
  std::swap(answer.sport, answer.dport);
  return answer;
}

}  // namespace sebpf::testing
