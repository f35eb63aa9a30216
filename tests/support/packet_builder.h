// Crafted packets for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 + TCP/UDP/
// ICMP, with the knobs the datapath cares about (flags, fragments, IPv6
// extension headers, hop limit). Checksums are not computed: the programs
// do not look at them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sebpf::testing {

enum class L4 : uint8_t { kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58, kOther = 253 };

struct PacketSpec {
  std::string src;  // "192.0.2.2" or "2001:db8::2"; the family follows
  std::string dst;
  L4 l4 = L4::kTcp;
  uint16_t sport = 40000;
  uint16_t dport = 443;
  uint8_t tcp_flags = 0x02;  // SYN
  uint8_t icmp_type = 8;     // echo request (v4); use 128 for ICMPv6
  uint16_t icmp_id = 0x1234;
  uint8_t hop_limit = 64;
  bool non_first_fragment = false;
  bool more_fragments = false;   // MF (IPv4) / M (IPv6): with !non_first_fragment, a first fragment
  uint32_t fragment_id = 1;      // IPv4 uses the low 16 bits
  bool ipv6_hop_by_hop = false;  // put a hop-by-hop header before L4
  // IPv4 options (padded to a multiple of 4 with END); e.g. {131, 7, 4, a, b, c, d} is LSRR.
  std::vector<uint8_t> ipv4_options = {};
  // An IPv6 routing header (type 4, one segment) with this many segments left.
  std::optional<uint8_t> ipv6_routing_segments_left = std::nullopt;
  size_t payload = 16;
  // When set, the L4 payload instead of `payload` filler bytes.
  std::optional<std::vector<uint8_t>> payload_bytes = std::nullopt;
};

// The source MAC of every frame build_packet() makes.
constexpr uint8_t kSourceMac[6] = {0x02, 0, 0, 0, 0, 0x02};

// A DHCPv4 client message as a VM's client sends it: BOOTREQUEST from
// `mac`, the magic cookie, a message-type option (53) of `type`, a
// parameter request list, END, then zero padding to 300 bytes (BOOTP's
// minimum).
std::vector<uint8_t> dhcp4_message(uint8_t type, const uint8_t (&mac)[6] = kSourceMac);
// A DHCPv6 client message: `type`, a transaction id, a client id and an
// elapsed-time option.
std::vector<uint8_t> dhcp6_message(uint8_t type);

// With an Ethernet header (TC programs, and what BPF_PROG_TEST_RUN expects
// for cgroup_skb too: it strips the L2 header itself).
std::vector<uint8_t> build_packet(const PacketSpec& spec);
// An Ethernet frame of another ethertype (ARP 0x0806, or anything).
std::vector<uint8_t> build_frame(uint16_t ethertype, size_t payload = 28);
// An Ethernet/IPv4 ARP request (op 1) or reply (op 2), padded to
// `frame_size` bytes (60: the minimum Ethernet frame).
std::vector<uint8_t> build_arp(uint16_t op, size_t frame_size = 60);
// The packet cut to `len` bytes: a truncated header.
std::vector<uint8_t> truncate(std::vector<uint8_t> packet, size_t len);

constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint8_t kTcpSynAck = 0x12;

}  // namespace sebpf::testing
