#include "dns/message.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace sebpf::dns {
namespace {

constexpr size_t kMaxNameOctets = 255;
constexpr size_t kMaxLabelOctets = 63;
// The smallest question (root name, type, class) and resource record
// (root name, type, class, TTL, rdata length).
constexpr size_t kMinQuestionSize = 5;
constexpr size_t kMinRecordSize = 11;

Error malformed(const std::string& what, size_t offset) {
  return Error(Errc::kInvalidArgument, what + " at offset " + std::to_string(offset));
}

// A name in presentation form: lowercase ASCII; '.', '\\' and bytes outside
// the printable range escaped as \DDD, so a label containing a dot can never
// pass for two labels.
void append_label(Name& out, const uint8_t* label, size_t len) {
  if (!out.empty()) out.push_back('.');
  const auto plain = [](uint8_t c) { return c > 0x20 && c < 0x7f && c != '.' && c != '\\'; };
  if (std::all_of(label, label + len, plain)) {  // the usual case: one append
    const size_t at = out.size();
    out.append(reinterpret_cast<const char*>(label), len);
    char* text = out.data();
    for (size_t i = at; i < out.size(); ++i) {
      if (text[i] >= 'A' && text[i] <= 'Z') text[i] = static_cast<char>(text[i] - 'A' + 'a');
    }
    return;
  }
  for (size_t i = 0; i < len; ++i) {
    const uint8_t c = label[i];
    if (c >= 'A' && c <= 'Z') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (plain(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      const char esc[4] = {'\\', static_cast<char>('0' + c / 100),
                           static_cast<char>('0' + c / 10 % 10), static_cast<char>('0' + c % 10)};
      out.append(esc, sizeof esc);
    }
  }
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> wire) : wire_(wire) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return wire_.size() - pos_; }

  Result<uint16_t> u16(const char* what) {
    if (remaining() < 2) return malformed(std::string("truncated ") + what, pos_);
    const uint16_t v = static_cast<uint16_t>(wire_[pos_] << 8 | wire_[pos_ + 1]);
    pos_ += 2;
    return v;
  }

  Result<uint32_t> u32(const char* what) {
    if (remaining() < 4) return malformed(std::string("truncated ") + what, pos_);
    const uint32_t v = static_cast<uint32_t>(wire_[pos_]) << 24 |
                       static_cast<uint32_t>(wire_[pos_ + 1]) << 16 |
                       static_cast<uint32_t>(wire_[pos_ + 2]) << 8 | wire_[pos_ + 3];
    pos_ += 4;
    return v;
  }

  Status skip(size_t n, const char* what) {
    if (remaining() < n) return malformed(std::string("truncated ") + what, pos_);
    pos_ += n;
    return ok_status();
  }

  // A possibly compressed name starting here; the reader moves past its
  // in-place part.
  Result<Name> name() {
    auto decoded = name_at(pos_);
    if (!decoded.ok()) return decoded.error();
    pos_ = decoded->second;
    return std::move(decoded->first);
  }

  // The name at `start` and the offset just past its in-place part. Every
  // pointer must point before the label that holds it, so following
  // pointers always moves backwards and ends.
  Result<std::pair<Name, size_t>> name_at(size_t start) const {
    Name out;
    size_t pos = start;
    size_t end = 0;  // set at the first pointer
    size_t octets = 0;
    for (;;) {
      if (pos >= wire_.size()) return malformed("truncated name", pos);
      const uint8_t len = wire_[pos];
      if ((len & 0xc0) == 0xc0) {
        if (pos + 1 >= wire_.size()) return malformed("truncated compression pointer", pos);
        const size_t target = static_cast<size_t>(len & 0x3f) << 8 | wire_[pos + 1];
        if (target >= pos) return malformed("compression pointer not pointing backwards", pos);
        if (target < kHeaderSize) return malformed("compression pointer into the header", pos);
        if (end == 0) end = pos + 2;
        pos = target;
        continue;
      }
      if ((len & 0xc0) != 0) return malformed("unknown label type", pos);
      octets += len + 1u;
      if (octets > kMaxNameOctets) return malformed("name longer than 255 octets", pos);
      if (len == 0) break;
      if (len > kMaxLabelOctets) return malformed("label longer than 63 octets", pos);
      if (pos + 1 + len > wire_.size()) return malformed("truncated label", pos);
      append_label(out, &wire_[pos + 1], len);
      pos += 1 + len;
    }
    return std::pair{std::move(out), end != 0 ? end : pos + 1};
  }

  std::span<const uint8_t> wire() const { return wire_; }

 private:
  std::span<const uint8_t> wire_;
  size_t pos_ = 0;
};

Result<Header> read_header(Reader& r) {
  if (r.remaining() < kHeaderSize) return malformed("truncated header", 0);
  Header h;
  SEBPF_ASSIGN_OR_RETURN(h.id, r.u16("header"));
  SEBPF_ASSIGN_OR_RETURN(uint16_t flags, r.u16("header"));
  h.qr = flags & 0x8000;
  h.opcode = static_cast<uint8_t>(flags >> 11 & 0xf);
  h.aa = flags & 0x0400;
  h.tc = flags & 0x0200;
  h.rd = flags & 0x0100;
  h.ra = flags & 0x0080;
  h.rcode = flags & 0xf;
  SEBPF_ASSIGN_OR_RETURN(h.qdcount, r.u16("header"));
  SEBPF_ASSIGN_OR_RETURN(h.ancount, r.u16("header"));
  SEBPF_ASSIGN_OR_RETURN(h.nscount, r.u16("header"));
  SEBPF_ASSIGN_OR_RETURN(h.arcount, r.u16("header"));
  // Counts are checked against what the bytes could hold before anything
  // is read for them.
  const size_t least =
      h.qdcount * kMinQuestionSize + (size_t{h.ancount} + h.nscount + h.arcount) * kMinRecordSize;
  if (least > r.remaining()) {
    return malformed("section counts need at least " + std::to_string(least) +
                         " bytes but the message has " + std::to_string(r.remaining()) + " left",
                     kHeaderSize);
  }
  return h;
}

Result<Question> read_question(Reader& r) {
  Question q;
  SEBPF_ASSIGN_OR_RETURN(q.name, r.name());
  SEBPF_ASSIGN_OR_RETURN(q.type, r.u16("question"));
  SEBPF_ASSIGN_OR_RETURN(q.klass, r.u16("question"));
  return q;
}

// One resource record; an OPT record goes to `edns` instead.
Result<std::optional<Record>> read_record(Reader& r, bool additional, std::optional<Edns>& edns,
                                          uint16_t& rcode) {
  const size_t start = r.offset();
  Record rec;
  SEBPF_ASSIGN_OR_RETURN(rec.name, r.name());
  SEBPF_ASSIGN_OR_RETURN(rec.type, r.u16("record"));
  SEBPF_ASSIGN_OR_RETURN(rec.klass, r.u16("record"));
  rec.ttl_offset = r.offset();
  SEBPF_ASSIGN_OR_RETURN(rec.ttl, r.u32("record"));
  SEBPF_ASSIGN_OR_RETURN(uint16_t rdlength, r.u16("record"));
  const size_t rdata = r.offset();
  SEBPF_RETURN_IF_ERROR(r.skip(rdlength, "record data"));
  const auto bytes = r.wire().subspan(rdata, rdlength);

  if (rec.type == type::kOpt) {
    if (!additional) return malformed("OPT record outside the additional section", start);
    if (edns) return malformed("second OPT record", start);
    if (!rec.name.empty()) return malformed("OPT record not owned by the root", start);
    edns = Edns{.udp_size = rec.klass,
                .version = static_cast<uint8_t>(rec.ttl >> 16 & 0xff),
                .dnssec_ok = (rec.ttl & 0x8000) != 0};
    rcode = static_cast<uint16_t>((rec.ttl >> 24) << 4 | rcode);
    return std::optional<Record>();
  }
  if (rec.klass == kClassIn && rec.type == type::kA) {
    if (rdlength != 4)
      return malformed("A record of " + std::to_string(rdlength) + " bytes", rdata);
    uint32_t v4;
    std::memcpy(&v4, bytes.data(), 4);
    rec.address = net::IpAddress::v4(v4);
  } else if (rec.klass == kClassIn && rec.type == type::kAaaa) {
    if (rdlength != 16) {
      return malformed("AAAA record of " + std::to_string(rdlength) + " bytes", rdata);
    }
    std::array<uint8_t, 16> v6;
    std::memcpy(v6.data(), bytes.data(), 16);
    rec.address = net::IpAddress::v6(v6);
  } else if (rec.type == type::kCname) {
    // The target may be compressed against anything before it.
    SEBPF_ASSIGN_OR_RETURN(auto target, r.name_at(rdata));
    if (target.second != rdata + rdlength) return malformed("CNAME data is not one name", rdata);
    rec.target = std::move(target.first);
  }
  return std::optional<Record>(std::move(rec));
}

Status read_records(Reader& r, uint16_t count, bool additional, Records& out,
                    std::optional<Edns>& edns, uint16_t& rcode) {
  for (uint16_t i = 0; i < count; ++i) {
    SEBPF_ASSIGN_OR_RETURN(auto rec, read_record(r, additional, edns, rcode));
    if (rec) out.push_back(std::move(*rec));
  }
  return ok_status();
}

}  // namespace

Result<Message> parse_message(std::span<const uint8_t> wire) {
  Reader r(wire);
  Message m;
  SEBPF_ASSIGN_OR_RETURN(m.header, read_header(r));
  for (uint16_t i = 0; i < m.header.qdcount; ++i) {
    SEBPF_ASSIGN_OR_RETURN(Question q, read_question(r));
    m.questions.push_back(std::move(q));
  }
  m.question_end = r.offset();
  uint16_t rcode = m.header.rcode;
  SEBPF_RETURN_IF_ERROR(read_records(r, m.header.ancount, false, m.answers, m.edns, rcode));
  SEBPF_RETURN_IF_ERROR(read_records(r, m.header.nscount, false, m.authority, m.edns, rcode));
  SEBPF_RETURN_IF_ERROR(read_records(r, m.header.arcount, true, m.additional, m.edns, rcode));
  if (r.remaining() != 0) return malformed("trailing bytes after the last record", r.offset());
  m.header.rcode = rcode;
  return m;
}

Result<Query> parse_query(std::span<const uint8_t> wire) {
  Reader r(wire);
  Query q;
  SEBPF_ASSIGN_OR_RETURN(q.header, read_header(r));
  if (q.header.qr) return malformed("a response where a query was expected", 2);
  if (q.header.opcode != 0) {
    return Error(Errc::kUnsupported, "opcode " + std::to_string(q.header.opcode) +
                                         " is not supported; only standard queries are");
  }
  if (q.header.qdcount != 1) {
    return malformed(std::to_string(q.header.qdcount) + " questions where one was expected", 4);
  }
  if (q.header.ancount != 0 || q.header.nscount != 0) {
    return malformed("answer or authority records in a query", 6);
  }
  if (q.header.arcount > 1) return malformed("more than one additional record in a query", 10);
  SEBPF_ASSIGN_OR_RETURN(q.question, read_question(r));
  // A transfer's answer is a stream of messages, and an endpoint relays one
  // message per query: a client would get the first part of the zone and
  // wait for the rest. Refused before anything is forwarded.
  if (q.question.type == type::kAxfr || q.question.type == type::kIxfr) {
    return Error(Errc::kUnsupported,
                 "zone transfers (AXFR, IXFR) are not served; ask for the records themselves");
  }
  q.question_end = r.offset();
  Records others;
  uint16_t rcode = q.header.rcode;
  SEBPF_RETURN_IF_ERROR(read_records(r, q.header.arcount, true, others, q.edns, rcode));
  if (!others.empty()) return malformed("an additional record other than OPT in a query", 10);
  if (r.remaining() != 0) return malformed("trailing bytes after the query", r.offset());
  return q;
}

uint16_t client_udp_size(const Query& query) {
  if (!query.edns) return kClassicUdpSize;
  return std::max(query.edns->udp_size, kClassicUdpSize);
}

}  // namespace sebpf::dns
