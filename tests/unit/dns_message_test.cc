// DNS wire parsing on hand-built messages: good answers with compression
// and CNAME chains, and every kind of malformation a hostile client or
// upstream can send. Responses and upstream queries the proxy builds itself.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/answer_addresses.h"
#include "dns/message.h"
#include "dns/response.h"
#include "dns/upstream_query.h"

namespace sebpf::dns {
namespace {

using Bytes = std::vector<uint8_t>;

// A small builder of wire messages for the tests.
struct Wire {
  Bytes b;
  Wire& u8(uint8_t v) {
    b.push_back(v);
    return *this;
  }
  Wire& u16(uint16_t v) { return u8(static_cast<uint8_t>(v >> 8)).u8(static_cast<uint8_t>(v)); }
  Wire& u32(uint32_t v) {
    return u16(static_cast<uint16_t>(v >> 16)).u16(static_cast<uint16_t>(v));
  }
  Wire& header(uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns = 0, uint16_t ar = 0) {
    return u16(0x1234).u16(flags).u16(qd).u16(an).u16(ns).u16(ar);
  }
  // "www.Example.org" as labels, ending with the root.
  Wire& name(const std::string& dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
      size_t dot = dotted.find('.', start);
      if (dot == std::string::npos) dot = dotted.size();
      u8(static_cast<uint8_t>(dot - start));
      for (size_t i = start; i < dot; ++i) u8(static_cast<uint8_t>(dotted[i]));
      start = dot + 1;
    }
    return u8(0);
  }
  Wire& pointer(uint16_t offset) { return u16(static_cast<uint16_t>(0xc000 | offset)); }
  Wire& question(const std::string& n, uint16_t type = type::kA) {
    return name(n).u16(type).u16(kClassIn);
  }
  // Owner already written; type, class, TTL, then rdata.
  Wire& rr(uint16_t type, uint32_t ttl, const Bytes& rdata) {
    u16(type).u16(kClassIn).u32(ttl).u16(static_cast<uint16_t>(rdata.size()));
    b.insert(b.end(), rdata.begin(), rdata.end());
    return *this;
  }
  Wire& opt(uint16_t size, uint32_t ttl_field = 0) {
    return u8(0).u16(type::kOpt).u16(size).u32(ttl_field).u16(0);
  }
};

constexpr uint16_t kQueryFlags = 0x0100;     // RD
constexpr uint16_t kResponseFlags = 0x8180;  // QR RD RA

// www.example.org CNAME cdn.example.net; cdn.example.net A 198.51.100.7,
// A 198.51.100.8, AAAA 2001:db8::7; plus an A for an unrelated owner.
Bytes cname_answer() {
  Wire w;
  w.header(kResponseFlags, 1, 5);
  w.question("www.Example.org");  // name at offset 12
  w.pointer(12).rr(type::kCname, 300, Wire().name("cdn.example.net").b);
  const uint16_t cdn = static_cast<uint16_t>(w.b.size() - 17);  // the target's offset
  w.pointer(cdn).rr(type::kA, 60, {198, 51, 100, 7});
  w.pointer(cdn).rr(type::kA, 30, {198, 51, 100, 8});
  w.pointer(cdn).rr(type::kAaaa, 45, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7});
  w.name("evil.example").rr(type::kA, 600, {203, 0, 113, 66});
  return w.b;
}

TEST(DnsMessageTest, AnAnswerWithACnameChainIsReadAndOnlyTheChainTeaches) {
  const Bytes wire = cname_answer();
  auto m = parse_message(wire);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->header.qr);
  ASSERT_EQ(m->questions.size(), 1U);
  EXPECT_EQ(m->questions[0].name, "www.example.org") << "names are lowercase";
  ASSERT_EQ(m->answers.size(), 5U);
  EXPECT_EQ(m->answers[0].target, "cdn.example.net");
  EXPECT_EQ(m->answers[1].name, "cdn.example.net") << "pointer into the CNAME's data";

  auto learned = addresses_for(*m, "www.example.org");
  ASSERT_TRUE(learned.ok()) << learned.error().message();
  EXPECT_EQ(std::vector<std::string>(learned->chain.begin(), learned->chain.end()),
            (std::vector<std::string>{"www.example.org", "cdn.example.net"}));
  ASSERT_EQ(learned->addresses.size(), 3U) << "not the unrelated owner's address";
  EXPECT_EQ(learned->addresses[0].address.to_string(), "198.51.100.7");
  EXPECT_EQ(learned->addresses[0].ttl, 60U);
  EXPECT_EQ(learned->addresses[2].address.to_string(), "2001:db8::7");
  EXPECT_EQ(learned->addresses[2].ttl, 45U);

  auto other = addresses_for(*m, "example.org");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->addresses.empty()) << "a name not asked for teaches nothing";
}

// The filter judges ::ffff:a.b.c.d by the IPv4 rules, so that is what such
// an AAAA record teaches (and a hostile answer full of them cannot make the
// learning path build an IPv6 rule the filter refuses).
TEST(DnsMessageTest, AnIpv4MappedAaaaTeachesTheIpv4Address) {
  Wire w;
  w.header(kResponseFlags, 1, 1);
  w.question("m.example", type::kAaaa);
  w.pointer(12).rr(type::kAaaa, 60, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 9});
  auto m = parse_message(w.b);
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto learned = addresses_for(*m, "m.example");
  ASSERT_TRUE(learned.ok());
  ASSERT_EQ(learned->addresses.size(), 1U);
  EXPECT_EQ(learned->addresses[0].address.to_string(), "198.51.100.9");
}

TEST(DnsMessageTest, CnameLoopsAndOverlongChainsAreErrors) {
  Wire loop;
  loop.header(kResponseFlags, 1, 2).question("a.example");
  loop.name("a.example").rr(type::kCname, 1, Wire().name("b.example").b);
  loop.name("b.example").rr(type::kCname, 1, Wire().name("a.example").b);
  auto m = parse_message(loop.b);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_FALSE(addresses_for(*m, "a.example").ok());

  Wire chain;
  const int n = static_cast<int>(kMaxCnameChain) + 2;
  chain.header(kResponseFlags, 1, static_cast<uint16_t>(n)).question("c0.example");
  for (int i = 0; i < n; ++i) {
    chain.name("c" + std::to_string(i) + ".example")
        .rr(type::kCname, 1, Wire().name("c" + std::to_string(i + 1) + ".example").b);
  }
  m = parse_message(chain.b);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_FALSE(addresses_for(*m, "c0.example").ok());
}

TEST(DnsMessageTest, AQueryIsReadWithItsEdnsSize) {
  const Bytes wire = Wire()
                         .header(kQueryFlags, 1, 0, 0, 1)
                         .question("Mirror.Example.ORG", type::kAaaa)
                         .opt(4096, 0x00008000)
                         .b;
  auto q = parse_query(wire);
  ASSERT_TRUE(q.ok()) << q.error().message();
  EXPECT_EQ(q->question.name, "mirror.example.org");
  EXPECT_EQ(q->question.type, type::kAaaa);
  ASSERT_TRUE(q->edns.has_value());
  EXPECT_EQ(q->edns->udp_size, 4096);
  EXPECT_TRUE(q->edns->dnssec_ok);
  EXPECT_EQ(client_udp_size(*q), 4096);

  auto plain = parse_query(Wire().header(kQueryFlags, 1, 0).question("example.org").b);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(client_udp_size(*plain), 512);
  auto tiny = parse_query(Wire().header(kQueryFlags, 1, 0, 0, 1).question("e.org").opt(100).b);
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(client_udp_size(*tiny), 512) << "never below 512";
}

TEST(DnsMessageTest, NamesKeepOddBytesEscapedSoADotInALabelIsNotTwoLabels) {
  Wire w;
  w.header(kQueryFlags, 1, 0);
  w.u8(8);
  for (char c : std::string("evil.com")) w.u8(static_cast<uint8_t>(c));
  w.u8(3).u8('o').u8('r').u8('g').u8(0).u16(type::kA).u16(kClassIn);
  auto q = parse_query(w.b);
  ASSERT_TRUE(q.ok()) << q.error().message();
  EXPECT_EQ(q->question.name, "evil\\046com.org");
  Wire root;
  root.header(kQueryFlags, 1, 0).u8(0).u16(2).u16(kClassIn);
  q = parse_query(root.b);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->question.name, "");
}

// Names are held inline up to dns::Name::kInline characters; longer ones,
// and ones that escaping makes longer, must come out whole all the same.
TEST(DnsMessageTest, LongNamesAndLongEscapedNamesAreReadWhole) {
  std::string longest;  // 255 octets on the wire, 253 characters as text
  for (int i = 0; i < 3; ++i) longest += std::string(63, static_cast<char>('a' + i)) + ".";
  longest += std::string(61, 'd');
  auto q = parse_query(Wire().header(kQueryFlags, 1, 0).question(longest).b);
  ASSERT_TRUE(q.ok()) << q.error().message();
  EXPECT_EQ(q->question.name, longest);

  Wire w;  // one label of 63 bytes 0x01, each escaped to four characters
  w.header(kQueryFlags, 1, 0).u8(63);
  for (int i = 0; i < 63; ++i) w.u8(1);
  w.u8(0).u16(type::kA).u16(kClassIn);
  q = parse_query(w.b);
  ASSERT_TRUE(q.ok()) << q.error().message();
  std::string escaped;
  for (int i = 0; i < 63; ++i) escaped += "\\001";
  EXPECT_EQ(q->question.name, escaped);
  EXPECT_EQ(q->question.name.size(), 252u);
}

TEST(DnsMessageTest, QueriesThatAreNotPlainQuestionsAreRefusedWithTheRightCode) {
  auto notimp = parse_query(Wire().header(0x2800, 1, 0).question("example.org").b);  // UPDATE
  ASSERT_FALSE(notimp.ok());
  EXPECT_EQ(notimp.error().code(), Errc::kUnsupported);
  for (const uint16_t transfer : {type::kAxfr, type::kIxfr}) {
    auto q = parse_query(Wire().header(kQueryFlags, 1, 0).question("example.org", transfer).b);
    ASSERT_FALSE(q.ok()) << transfer;
    EXPECT_EQ(q.error().code(), Errc::kUnsupported) << transfer;
  }
  for (const Bytes& bad : {
           Wire().header(kResponseFlags, 1, 0).question("example.org").b,           // a response
           Wire().header(kQueryFlags, 2, 0).question("a.org").question("b.org").b,  // 2 questions
           Wire().header(kQueryFlags, 0, 0).b,                                      // no question
           Wire()
               .header(kQueryFlags, 1, 1)
               .question("a.org")
               .name("a.org")
               .rr(type::kA, 1, {1, 2, 3, 4})
               .b,
           Wire()
               .header(kQueryFlags, 1, 0, 0, 1)
               .question("a.org")
               .name("a.org")
               .rr(type::kA, 1, {1, 2, 3, 4})
               .b,
           Wire().header(kQueryFlags, 1, 0).question("a.org").u8(0).b,  // trailing byte
       }) {
    auto q = parse_query(bad);
    ASSERT_FALSE(q.ok());
    EXPECT_EQ(q.error().code(), Errc::kInvalidArgument);
  }
}

// Each malformation, and a word its error must contain.
struct Malformed {
  const char* what;
  Bytes wire;
  const char* says;
};

std::vector<Malformed> malformed_messages() {
  std::vector<Malformed> out;
  out.push_back({"short header", {0x12, 0x34, 0x01}, "truncated header"});
  out.push_back({"counts of 65535 in a bare header",
                 Wire().header(kResponseFlags, 65535, 65535, 65535, 65535).b, "section counts"});
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).pointer(12).u16(1).u16(1);  // points at itself
    out.push_back({"pointer to itself", w.b, "not pointing backwards"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).pointer(2).u16(1).u16(1).u8(0);
    out.push_back({"pointer into the header", w.b, "into the header"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).pointer(20).u16(1).u16(1).u8(0);
    out.push_back({"forward pointer", w.b, "not pointing backwards"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).u8(64);
    for (int i = 0; i < 64; ++i) w.u8('a');
    w.u8(0).u16(1).u16(1);
    out.push_back({"64-octet label", w.b, "label"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0);
    for (int i = 0; i < 5; ++i) {
      w.u8(63);
      for (int j = 0; j < 63; ++j) w.u8('a');
    }
    w.u8(0).u16(1).u16(1);
    out.push_back({"256-octet name", w.b, "255"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).u8(0x40).u8(0).u16(1).u16(1);
    out.push_back({"extended label type", w.b, "label type"});
  }
  {
    Wire w;
    w.header(kQueryFlags, 1, 0).u8(10).u8('a').u8('b').u8('c').u8('d').u8('e');
    out.push_back({"truncated label", w.b, "truncated"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 1).question("a.org").pointer(12).rr(type::kA, 1, {1, 2, 3, 4, 5});
    out.push_back({"A with 5 bytes", w.b, "A record of 5 bytes"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 1).question("a.org").pointer(12).rr(type::kAaaa, 1, {1, 2, 3, 4});
    out.push_back({"AAAA with 4 bytes", w.b, "AAAA record of 4 bytes"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 1)
        .question("a.org")
        .pointer(12)
        .u16(type::kA)
        .u16(1)
        .u32(1)
        .u16(40);
    w.u8(1).u8(2);
    out.push_back({"rdata past the end", w.b, "truncated record data"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 0, 0, 2).question("a.org").opt(1232).opt(1232);
    out.push_back({"two OPT records", w.b, "second OPT"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 0, 0, 1)
        .question("a.org")
        .name("a.org")
        .u16(type::kOpt)
        .u16(512)
        .u32(0)
        .u16(0);
    out.push_back({"OPT not owned by the root", w.b, "root"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 1).question("a.org").opt(512);
    out.push_back({"OPT in the answer section", w.b, "OPT record outside"});
  }
  {
    Wire w;
    w.header(kResponseFlags, 1, 1)
        .question("a.org")
        .pointer(12)
        .rr(type::kCname, 1, Bytes{1, 'x', 0, 0});  // a name and a stray byte
    out.push_back({"CNAME data longer than its name", w.b, "CNAME"});
  }
  return out;
}

TEST(DnsMessageTest, EveryMalformationIsAnErrorSayingWhat) {
  for (const Malformed& m : malformed_messages()) {
    auto parsed = parse_message(m.wire);
    ASSERT_FALSE(parsed.ok()) << m.what;
    EXPECT_EQ(parsed.error().code(), Errc::kInvalidArgument) << m.what;
    EXPECT_NE(parsed.error().message().find(m.says), std::string::npos)
        << m.what << ": " << parsed.error().message();
    // Every prefix of it is refused too, and never crashes.
    for (size_t len = 0; len < m.wire.size(); ++len) {
      (void)parse_message(std::span(m.wire.data(), len));
      (void)parse_query(std::span(m.wire.data(), len));
    }
  }
}

TEST(DnsMessageTest, PrefixesOfAGoodAnswerAreAllErrors) {
  const Bytes wire = cname_answer();
  for (size_t len = 0; len < wire.size(); ++len) {
    EXPECT_FALSE(parse_message(std::span(wire.data(), len)).ok()) << len;
  }
}

// What goes upstream is what was judged: the question as the client wrote
// it, RD, AD and CD, the client's EDNS size, version and DO bit. Options
// (here 3,000 bytes a workload chose), other flag bits and the extended
// rcode stay behind.
TEST(DnsUpstreamQueryTest, OnlyTheQuestionAndWhatAnswersDependOnGoUpstream) {
  Wire client;
  client.header(0x0730, 1, 0, 0, 1).question("Mirror.Example.ORG", type::kAaaa);
  client.u8(0).u16(type::kOpt).u16(4096).u32(0x7f008000).u16(3004).u16(65001).u16(3000);
  client.b.insert(client.b.end(), 3000, 0xee);
  client.b[3] |= 0x40;  // the Z bit
  auto q = parse_query(client.b);
  ASSERT_TRUE(q.ok()) << q.error().message();

  Bytes out(5000, 0xaa);  // a reused buffer: nothing of it may stay
  make_upstream_query(*q, client.b, out);
  EXPECT_EQ(out, Wire()
                     .header(0x0130, 1, 0, 0, 1)
                     .question("Mirror.Example.ORG", type::kAaaa)
                     .opt(4096, 0x00008000)
                     .b);

  const Bytes plain = Wire().header(0x0100, 1, 0).question("example.org").b;
  q = parse_query(plain);
  ASSERT_TRUE(q.ok());
  make_upstream_query(*q, plain, out);
  EXPECT_EQ(out, plain);
}

TEST(DnsResponseTest, ErrorResponsesEchoTheQuestionAndEdns) {
  const Bytes wire =
      Wire().header(kQueryFlags, 1, 0, 0, 1).question("Secret.Example.org").opt(4096).b;
  auto q = parse_query(wire);
  ASSERT_TRUE(q.ok());
  const Bytes nx = make_error_response(*q, wire, rcode::kNxDomain);
  auto m = parse_message(nx);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->header.qr);
  EXPECT_TRUE(m->header.rd);
  EXPECT_TRUE(m->header.ra);
  EXPECT_EQ(m->header.rcode, rcode::kNxDomain);
  ASSERT_EQ(m->questions.size(), 1U);
  EXPECT_EQ(m->questions[0].name, "secret.example.org");
  EXPECT_TRUE(m->answers.empty());
  ASSERT_TRUE(m->edns.has_value());
  EXPECT_EQ(m->edns->udp_size, kOurUdpSize);

  const Bytes formerr =
      make_header_response(Wire().header(kQueryFlags, 3, 0).u8(7).b, rcode::kFormErr);
  m = parse_message(formerr);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->header.rcode, rcode::kFormErr);
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(make_header_response(Bytes{1, 2, 3}, rcode::kFormErr).empty());
}

TEST(DnsResponseTest, AnswersTooBigForUdpAreCutToTheQuestionWithTc) {
  const Bytes wire = cname_answer();
  auto same = fit_for_udp(wire, wire.size());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, wire);
  auto cut = fit_for_udp(wire, wire.size() - 1);
  ASSERT_TRUE(cut.ok());
  auto m = parse_message(*cut);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_TRUE(m->header.tc);
  EXPECT_EQ(m->questions.size(), 1U);
  EXPECT_TRUE(m->answers.empty());
  EXPECT_LT(cut->size(), wire.size());
}

// A hostile upstream can write a question whose name is a compression
// pointer to bytes that, read as labels, run on past the question section.
// Cut there, the question no longer stands alone; the client gets the
// header with TC and no question rather than a message it cannot parse.
// (Found by the fuzzer.)
TEST(DnsResponseTest, AQuestionThatNeedsBytesPastItIsLeftOutOfTheCut) {
  Bytes wire = {0x12, 0x34, 0x81, 0x80, 0, 2, 0, 1, 0, 0, 0, 0};  // 2 questions, 1 answer
  wire.insert(wire.end(), {3, 'a', 'b', 'c', 0, 0, 1, 0, 1});     // 12: "abc" A IN
  // 21: a pointer to 18, where "01 00 01 c0 12 ..." reads as the labels
  // \000, \192 and an 18-byte one that ends inside the answer's address.
  wire.insert(wire.end(), {0xc0, 18, 0, 1, 0, 1});
  ASSERT_EQ(wire.size(), 27U);  // the question section ends here
  wire.insert(wire.end(), {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 0, 1});  // an A
  const auto whole = parse_message(wire);
  ASSERT_TRUE(whole.ok()) << whole.error().message();
  ASSERT_EQ(whole->questions.size(), 2U);
  auto cut = fit_for_udp(wire, wire.size() - 1);
  ASSERT_TRUE(cut.ok());
  auto m = parse_message(*cut);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_TRUE(m->header.tc);
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->questions.empty());
  EXPECT_TRUE(m->answers.empty());
}

TEST(DnsResponseTest, TtlsAreCappedSoNoClientCachesLongerThanTheFilterAllows) {
  Bytes wire = cname_answer();
  auto m = parse_message(wire);
  ASSERT_TRUE(m.ok());
  cap_ttls(wire, *m, 40);
  auto capped = parse_message(wire);
  ASSERT_TRUE(capped.ok()) << capped.error().message();
  std::vector<uint32_t> ttls;
  for (const Record& r : capped->answers) ttls.push_back(r.ttl);
  EXPECT_EQ(ttls, (std::vector<uint32_t>{40, 40, 30, 40, 40}));

  Bytes with_opt =
      Wire().header(kResponseFlags, 1, 0, 0, 1).question("a.example").opt(1232, 0x8000).b;
  m = parse_message(with_opt);
  ASSERT_TRUE(m.ok());
  cap_ttls(with_opt, *m, 0);
  m = parse_message(with_opt);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->edns->dnssec_ok) << "the OPT record's flags are not a TTL";
}

}  // namespace
}  // namespace sebpf::dns
