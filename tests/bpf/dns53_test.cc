// A VM asks its DNS endpoint on port 53 of the endpoint's address (a stub
// resolver cannot be told a port): sebpf_tc_guard turns the query to the
// endpoint's port, sebpf_tc_track turns the answer back to port 53, with
// the checksums kept right. A guest that uses the endpoint's port itself
// is left as it is.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "vm_endpoint_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Mode;

constexpr uint16_t kNeighbourEndpointPort = 20008;

// Where a built packet's L4 header starts: Ethernet, then IPv4 (no
// options here) or IPv6 (no extension headers here).
size_t l4_offset(const std::vector<uint8_t>& p) { return p[12] == 0x08 ? 14 + 20 : 14 + 40; }

uint16_t port_at(const std::vector<uint8_t>& p, size_t off) {
  return static_cast<uint16_t>(p[off] << 8 | p[off + 1]);
}
uint16_t source_port(const std::vector<uint8_t>& p) { return port_at(p, l4_offset(p)); }
uint16_t destination_port(const std::vector<uint8_t>& p) { return port_at(p, l4_offset(p) + 2); }

size_t checksum_offset(const std::vector<uint8_t>& p) {
  const bool ipv4 = p[12] == 0x08;
  const uint8_t protocol = ipv4 ? p[14 + 9] : p[14 + 6];
  return l4_offset(p) + (protocol == 6 ? 16 : 6);
}

// The one's complement sum of the pseudo-header and the L4 segment,
// checksum field included: 0xffff when the checksum is right.
uint16_t l4_sum(const std::vector<uint8_t>& p) {
  const bool ipv4 = p[12] == 0x08;
  const size_t l4 = l4_offset(p);
  uint32_t sum = 0;
  const auto add = [&](size_t from, size_t len) {
    for (size_t i = 0; i < len; i += 2) {
      sum += static_cast<uint32_t>(p[from + i] << 8 | (i + 1 < len ? p[from + i + 1] : 0));
    }
  };
  if (ipv4) {
    add(14 + 12, 8);  // source and destination
    sum += p[14 + 9];
  } else {
    add(14 + 8, 32);
    sum += p[14 + 6];
  }
  sum += static_cast<uint32_t>(p.size() - l4);
  add(l4, p.size() - l4);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The packet with its L4 checksum filled in (the builder leaves it 0).
std::vector<uint8_t> with_checksum(std::vector<uint8_t> p) {
  const size_t at = checksum_offset(p);
  p[at] = p[at + 1] = 0;
  uint16_t checksum = static_cast<uint16_t>(~l4_sum(p));
  if (checksum == 0) checksum = 0xffff;
  p[at] = static_cast<uint8_t>(checksum >> 8);
  p[at + 1] = static_cast<uint8_t>(checksum);
  return p;
}

class Dns53Test : public VmEndpointTest {
 protected:
  void configure(datapath::Config& config) override {
    VmEndpointTest::configure(config);
    config.max_attachments = 8;
    config.max_flows_per_attachment = datapath::kMinFlowsPerAttachment;  // 64
    config.flow_idle_other = std::chrono::seconds(2);
  }

  // The guest's query from its port `from` to `endpoint`:`port`.
  std::vector<uint8_t> query(L4 l4, const char* endpoint, uint16_t port, uint16_t from) {
    const bool v4 = std::string(endpoint).find(':') == std::string::npos;
    return with_checksum(build_packet(
        {.src = v4 ? self4() : self6(), .dst = endpoint, .l4 = l4, .sport = from, .dport = port}));
  }
  // The endpoint's answer to it, from the endpoint's own port.
  std::vector<uint8_t> answer(L4 l4, const char* endpoint, uint16_t to,
                              uint16_t endpoint_port = kEndpointPort) {
    const bool v4 = std::string(endpoint).find(':') == std::string::npos;
    return with_checksum(build_packet({.src = endpoint,
                                       .dst = v4 ? self4() : self6(),
                                       .l4 = l4,
                                       .sport = endpoint_port,
                                       .dport = to,
                                       .tcp_flags = kTcpSynAck}));
  }
};

TEST_P(Dns53Test, AQueryToPort53OfTheEndpointGoesToItAndItsAnswerComesFrom53) {
  struct Case {
    L4 l4;
    const char* endpoint;
  };
  uint16_t from = 41000;
  for (const Case& c : {Case{L4::kUdp, "198.51.100.1"}, Case{L4::kTcp, "198.51.100.1"},
                        Case{L4::kUdp, "2001:db8::1"}, Case{L4::kTcp, "2001:db8::1"}}) {
    SCOPED_TRACE(c.endpoint + std::string(c.l4 == L4::kUdp ? " UDP" : " TCP"));
    ++from;
    const auto sent = guard_passes(query(c.l4, c.endpoint, 53, from));
    ASSERT_FALSE(sent.empty()) << "dropped";
    EXPECT_EQ(destination_port(sent), kEndpointPort);
    EXPECT_EQ(source_port(sent), from);
    EXPECT_EQ(l4_sum(sent), 0xffff) << "checksum";
    const auto back = track_passes(answer(c.l4, c.endpoint, from));
    EXPECT_EQ(source_port(back), 53);
    EXPECT_EQ(destination_port(back), from);
    EXPECT_EQ(l4_sum(back), 0xffff) << "checksum";
  }
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_DNS_ENDPOINT), 4U);
}

TEST_P(Dns53Test, AGuestUsingTheEndpointsPortIsLeftAsItIs) {
  const auto sent = guard_passes(query(L4::kUdp, "198.51.100.1", kEndpointPort, 42000));
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(destination_port(sent), kEndpointPort);
  const auto back = track_passes(answer(L4::kUdp, "198.51.100.1", 42000));
  EXPECT_EQ(source_port(back), kEndpointPort);
}

// An exchange idle as long as a UDP flow (2 s here) is over: the guest's
// port, now asking the endpoint's port itself, gets its answers from there.
TEST_P(Dns53Test, AnExchangeIdleAsLongAsAFlowIsOver) {
  ASSERT_FALSE(guard_passes(query(L4::kUdp, "198.51.100.1", 53, 46000)).empty());
  EXPECT_EQ(source_port(track_passes(answer(L4::kUdp, "198.51.100.1", 46000))), 53);
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  ASSERT_FALSE(guard_passes(query(L4::kUdp, "198.51.100.1", kEndpointPort, 46000)).empty());
  EXPECT_EQ(source_port(track_passes(answer(L4::kUdp, "198.51.100.1", 46000))), kEndpointPort);
}

// An IPv4 UDP datagram may carry no checksum (0): it keeps none.
TEST_P(Dns53Test, AUdpDatagramWithoutAChecksumKeepsNone) {
  const auto packet = build_packet(
      {.src = self4(), .dst = "198.51.100.1", .l4 = L4::kUdp, .sport = 43000, .dport = 53});
  const auto sent = guard_passes(packet);
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(destination_port(sent), kEndpointPort);
  EXPECT_EQ(sent[checksum_offset(sent)], 0);
  EXPECT_EQ(sent[checksum_offset(sent) + 1], 0);
}

TEST_P(Dns53Test, Port53ElsewhereIsAnotherResolverAndDisabledChangesNothing) {
  EXPECT_TRUE(guard_passes(query(L4::kUdp, "203.0.113.9", 53, 44000)).empty());
  EXPECT_EQ(count(SEBPF_REASON_DENY_RESOLVER), 1U);
  set_mode(Mode::kDisabled);
  const auto sent = guard_passes(query(L4::kUdp, "198.51.100.1", 53, 44001));
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(destination_port(sent), 53) << "port 53 there is whatever listens on it";
}

// The guests of a bridge share its address, and each asks its port 53.
// One that floods port 53 from many ports pushes out only its own
// exchanges, never a neighbour's: the neighbour's answer still comes from
// port 53 (from the endpoint's port, its resolver would drop it).
TEST_P(Dns53Test, AGuestFloodingPort53CannotPushOutAnotherGuestsExchange) {
  attach_neighbour();
  if (HasFatalFailure()) return;
  datapath::DnsEndpoint dns;
  dns.v4 = *net::IpAddress::parse("198.51.100.1");
  dns.port = kNeighbourEndpointPort;
  ASSERT_TRUE(dp_->set_dns_endpoint(neighbour_key_, dns).ok());

  ASSERT_FALSE(guard_passes(query(L4::kUdp, "198.51.100.1", 53, 45000)).empty());
  // Far more exchanges than all eight attachments' share of a table that
  // all of them shared (16 each).
  constexpr uint16_t kFlood = 1024;
  for (uint16_t from = 50000; from < 50000 + kFlood; ++from) {
    const auto sent =
        guard_passes_on(neighbour_ifindex_, query(L4::kUdp, "198.51.100.1", 53, from));
    ASSERT_FALSE(sent.empty()) << "dropped";
    ASSERT_EQ(destination_port(sent), kNeighbourEndpointPort);
  }
  EXPECT_EQ(source_port(track_passes(answer(L4::kUdp, "198.51.100.1", 45000))), 53)
      << "the neighbour's flood pushed this guest's exchange out";
  EXPECT_EQ(source_port(track_passes_on(
                neighbour_ifindex_,
                answer(L4::kUdp, "198.51.100.1", 50000 + kFlood - 1, kNeighbourEndpointPort))),
            53);
}

// A guest's port 53 exchanges are not kept with the flows it opened:
// asking much does not push out the entry that keeps a connection open
// past its address's TTL.
TEST_P(Dns53Test, AGuestsPort53QueriesDoNotPushOutItsKeptConnections) {
  const datapath::Rule learned = {*net::IpPrefix::parse("203.0.113.80"), datapath::Action::kAllow,
                                  datapath::BootClock::now() + std::chrono::milliseconds(600),
                                  /*learned=*/true};
  ASSERT_TRUE(dp_->add_rule(key_, learned).ok());
  const PacketSpec syn = {.src = self4(), .dst = "203.0.113.80", .l4 = L4::kTcp, .dport = 443};
  ASSERT_TRUE(out(syn));
  // Four times what the table of opened flows holds here.
  for (uint16_t from = 30000; from < 30000 + 4 * datapath::kMinFlowsPerAttachment; ++from) {
    ASSERT_FALSE(guard_passes(query(L4::kUdp, "198.51.100.1", 53, from)).empty());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  PacketSpec data = syn;
  data.tcp_flags = 0x18;  // PSH ACK
  EXPECT_TRUE(out(data)) << "the connection was cut when its address's TTL ran out";
  EXPECT_EQ(count(SEBPF_REASON_ALLOW_KEPT_CONNECTION), 1U);
}

INSTANTIATE_TEST_SUITE_P(Programs, Dns53Test, ::testing::Values(ProgramKind::kTc), kind_name);

}  // namespace
}  // namespace sebpf::testing
