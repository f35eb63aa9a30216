#include "packet_builder.h"

#include <arpa/inet.h>

#include <cstring>

namespace sebpf::testing {
namespace {

void put16(std::vector<uint8_t>& p, uint16_t v) {
  p.push_back(static_cast<uint8_t>(v >> 8));
  p.push_back(static_cast<uint8_t>(v & 0xff));
}

void put_bytes(std::vector<uint8_t>& p, const void* data, size_t n) {
  const auto* b = static_cast<const uint8_t*>(data);
  p.insert(p.end(), b, b + n);
}

void ethernet(std::vector<uint8_t>& p, uint16_t ethertype) {
  const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};
  put_bytes(p, dst, 6);
  put_bytes(p, kSourceMac, 6);
  put16(p, ethertype);
}

std::vector<uint8_t> l4_header(const PacketSpec& s) {
  const size_t payload = s.payload_bytes ? s.payload_bytes->size() : s.payload;
  std::vector<uint8_t> h;
  switch (s.l4) {
    case L4::kTcp:
      put16(h, s.sport);
      put16(h, s.dport);
      h.insert(h.end(), 8, 0);  // seq, ack
      h.push_back(0x50);        // data offset 5
      h.push_back(s.tcp_flags);
      put16(h, 65535);  // window
      h.insert(h.end(), 4, 0);
      break;
    case L4::kUdp:
      put16(h, s.sport);
      put16(h, s.dport);
      put16(h, static_cast<uint16_t>(8 + payload));
      put16(h, 0);
      break;
    case L4::kIcmp:
    case L4::kIcmpv6:
      h.push_back(s.icmp_type);
      h.push_back(0);
      put16(h, 0);
      put16(h, s.icmp_id);
      put16(h, 1);
      break;
    case L4::kOther:
      break;
  }
  if (s.payload_bytes) {
    h.insert(h.end(), s.payload_bytes->begin(), s.payload_bytes->end());
  } else {
    h.insert(h.end(), s.payload, 0xab);
  }
  return h;
}

}  // namespace

std::vector<uint8_t> dhcp4_message(uint8_t type, const uint8_t (&mac)[6]) {
  std::vector<uint8_t> m = {1, 1, 6, 0};  // BOOTREQUEST, Ethernet, 6-byte MAC, no hops
  put_bytes(m, "\x12\x34\x56\x78", 4);    // xid
  m.insert(m.end(), 4, 0);                // secs, flags
  m.insert(m.end(), 16, 0);               // ciaddr, yiaddr, siaddr, giaddr
  put_bytes(m, mac, 6);
  m.insert(m.end(), 10 + 64 + 128, 0);  // chaddr padding, sname, file
  const uint8_t cookie_and_options[] = {99, 130, 83, 99, 53, 1, type, 55, 3, 1, 3, 6, 255};
  put_bytes(m, cookie_and_options, sizeof cookie_and_options);
  m.resize(300, 0);
  return m;
}

std::vector<uint8_t> dhcp6_message(uint8_t type) {
  std::vector<uint8_t> m = {type, 0xab, 0xcd, 0xef};
  const uint8_t options[] = {0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 2,  // client id (DUID-LL)
                             0, 8, 0, 2,  0, 0};                         // elapsed time
  put_bytes(m, options, sizeof options);
  return m;
}

std::vector<uint8_t> build_packet(const PacketSpec& s) {
  std::vector<uint8_t> p;
  in_addr s4{}, d4{};
  in6_addr s6{}, d6{};
  const std::vector<uint8_t> l4 = l4_header(s);
  if (inet_pton(AF_INET, s.src.c_str(), &s4) == 1 && inet_pton(AF_INET, s.dst.c_str(), &d4) == 1) {
    std::vector<uint8_t> options = s.ipv4_options;
    options.resize((options.size() + 3) / 4 * 4, 0);  // END-padded
    ethernet(p, 0x0800);
    p.push_back(static_cast<uint8_t>(0x40 | (5 + options.size() / 4)));
    p.push_back(0);
    put16(p, static_cast<uint16_t>(20 + options.size() + l4.size()));
    put16(p, static_cast<uint16_t>(s.fragment_id));
    // Offset in 8-byte units, and the more-fragments flag.
    put16(p, static_cast<uint16_t>((s.non_first_fragment ? 185 : 0) |
                                   (s.more_fragments ? 0x2000 : 0)));
    p.push_back(s.hop_limit);
    p.push_back(static_cast<uint8_t>(s.l4));
    put16(p, 0);
    put_bytes(p, &s4, 4);
    put_bytes(p, &d4, 4);
    p.insert(p.end(), options.begin(), options.end());
    p.insert(p.end(), l4.begin(), l4.end());
    return p;
  }
  inet_pton(AF_INET6, s.src.c_str(), &s6);
  inet_pton(AF_INET6, s.dst.c_str(), &d6);
  std::vector<uint8_t> ext;
  uint8_t first_next = static_cast<uint8_t>(s.l4);
  if (s.non_first_fragment || s.more_fragments) {
    ext.push_back(static_cast<uint8_t>(s.l4));
    ext.push_back(0);
    // Offset (in 8-byte units, shifted by 3) and the M flag.
    put16(ext, static_cast<uint16_t>((s.non_first_fragment ? 185 << 3 : 0) |
                                     (s.more_fragments ? 1 : 0)));
    put16(ext, static_cast<uint16_t>(s.fragment_id >> 16));
    put16(ext, static_cast<uint16_t>(s.fragment_id));
    first_next = 44;
  }
  if (s.ipv6_routing_segments_left) {
    // Segment routing header: next, length (in 8 bytes, excluding the
    // first 8), type 4, segments left, last entry, flags, tag; one segment.
    std::vector<uint8_t> rh = {first_next, 2, 4, *s.ipv6_routing_segments_left, 0, 0, 0, 0};
    rh.insert(rh.end(), 16, 0x20);
    ext.insert(ext.begin(), rh.begin(), rh.end());
    first_next = 43;
  }
  if (s.ipv6_hop_by_hop) {
    std::vector<uint8_t> hbh = {first_next, 0, 1, 4, 0, 0, 0, 0};  // PadN
    ext.insert(ext.begin(), hbh.begin(), hbh.end());
    first_next = 0;
  }
  ethernet(p, 0x86dd);
  p.push_back(0x60);
  p.insert(p.end(), 3, 0);
  put16(p, static_cast<uint16_t>(ext.size() + l4.size()));
  p.push_back(first_next);
  p.push_back(s.hop_limit);
  put_bytes(p, &s6, 16);
  put_bytes(p, &d6, 16);
  p.insert(p.end(), ext.begin(), ext.end());
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}

std::vector<uint8_t> build_frame(uint16_t ethertype, size_t payload) {
  std::vector<uint8_t> p;
  ethernet(p, ethertype);
  p.insert(p.end(), payload, 0);
  return p;
}

std::vector<uint8_t> build_arp(uint16_t op, size_t frame_size) {
  std::vector<uint8_t> p;
  ethernet(p, 0x0806);
  put16(p, 1);       // Ethernet
  put16(p, 0x0800);  // IPv4
  p.push_back(6);
  p.push_back(4);
  put16(p, op);
  const uint8_t sender[10] = {0x02, 0, 0, 0, 0, 0x02, 198, 51, 100, 2};
  const uint8_t target[10] = {0, 0, 0, 0, 0, 0, 198, 51, 100, 1};
  put_bytes(p, sender, sizeof sender);
  put_bytes(p, target, sizeof target);
  if (p.size() < frame_size) p.resize(frame_size, 0);
  return p;
}

std::vector<uint8_t> truncate(std::vector<uint8_t> packet, size_t len) {
  packet.resize(std::min(len, packet.size()));
  return packet;
}

}  // namespace sebpf::testing
