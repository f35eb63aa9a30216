#include "ctl/output.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "ctl/arguments.h"

namespace sebpf::ctl {
namespace {

using google::protobuf::util::TimeUtil;

std::string type_name(v1::TargetType type) {
  switch (type) {
    case v1::TARGET_TYPE_CGROUP:
      return "cgroup";
    case v1::TARGET_TYPE_INTERFACE:
      return "interface";
    default:
      return "unknown";
  }
}

std::string dns_text(const v1::DnsEndpoint& dns) {
  if (dns.port() == 0) return "-";
  std::string out;
  for (const std::string& addr : {dns.ipv4(), dns.ipv6()}) {
    if (addr.empty()) continue;
    if (!out.empty()) out += ",";
    out += addr.find(':') != std::string::npos ? "[" + addr + "]" : addr;
  }
  if (out.empty()) out = "(no address yet)";
  return out + ":" + std::to_string(dns.port());
}

// Sorted by key, so output is stable.
std::string metadata_text(const v1::Attachment& a) {
  std::vector<std::pair<std::string, std::string>> items(a.metadata().begin(), a.metadata().end());
  std::sort(items.begin(), items.end());
  std::string out;
  for (const auto& [k, v] : items) {
    if (!out.empty()) out += ",";
    out += k + "=" + v;
  }
  return out.empty() ? "-" : out;
}

// Whole seconds: enough for people, and columns stay narrow.
std::string time_text(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  google::protobuf::Timestamp whole;
  whole.set_seconds(t.seconds());
  return TimeUtil::ToString(whole);
}

}  // namespace

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string attachments_table(const v1::ListResponse& list) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TYPE", "TARGET", "DNS", "POLICY", "CREATED", "WARNINGS", "METADATA"}};
  for (const v1::Attachment& a : list.attachments()) {
    // Only how many: `get` prints them.
    rows.push_back(
        {a.id(), type_name(a.type()), a.target(), dns_text(a.dns()),
         a.applied_policy().empty() ? "-" : a.applied_policy(), time_text(a.created_at()),
         a.warnings().empty() ? "-" : std::to_string(a.warnings_size()), metadata_text(a)});
  }
  return format_table(rows);
}

std::string attachment_text(const v1::Attachment& a) {
  std::vector<std::vector<std::string>> rows = {
      {"id:", a.id()},
      {"type:", type_name(a.type())},
      {"target:", a.target()},
      {"dns:", dns_text(a.dns())},
      {"policy:", a.applied_policy().empty() ? "-" : a.applied_policy()},
      {"created:", time_text(a.created_at())},
      {"metadata:", metadata_text(a)}};
  for (const std::string& w : a.warnings()) rows.push_back({"warning:", w});
  return format_table(rows);
}

std::string policy_text(const v1::Policy& p) {
  std::string out = format_table({{"mode:", std::string(mode_name(p.mode()))},
                                  {"dns mode:", std::string(mode_name(p.dns_mode()))}});
  std::vector<std::vector<std::string>> cidrs = {{"CIDR", "ACTION", "EXPIRES"}};
  for (const v1::CidrRule& r : p.cidrs()) {
    cidrs.push_back({r.cidr(), std::string(action_name(r.action())),
                     r.has_expires_at() ? time_text(r.expires_at()) : "never"});
  }
  std::vector<std::vector<std::string>> domains = {{"DOMAIN", "ACTION"}};
  for (const v1::DomainRule& r : p.domains()) {
    domains.push_back({r.domain(), std::string(action_name(r.action()))});
  }
  out += "\n" + (p.cidrs().empty() ? std::string("no CIDR rules\n") : format_table(cidrs));
  out += "\n" + (p.domains().empty() ? std::string("no domain rules\n") : format_table(domains));
  return out;
}

std::string counters_text(const v1::Counters& c) {
  std::string out = format_table(
      {{"allowed:", std::to_string(c.allowed())}, {"denied:", std::to_string(c.denied())}});
  std::vector<std::vector<std::string>> rows = {{"HOOK", "REASON", "COUNT"}};
  for (const v1::Counter& counter : c.counters()) {
    rows.push_back({counter.hook(), counter.reason(), std::to_string(counter.count())});
  }
  out += "\n" + (c.counters().empty() ? std::string("nothing judged yet\n") : format_table(rows));
  if (c.has_dns()) {
    const v1::DnsCounters& d = c.dns();
    out +=
        "\n" + format_table({{"DNS", "COUNT"},
                             {"queries", std::to_string(d.queries())},
                             {"refused", std::to_string(d.refused())},
                             {"forwarded", std::to_string(d.forwarded())},
                             {"answered", std::to_string(d.answered())},
                             {"servfail", std::to_string(d.servfail())},
                             {"malformed", std::to_string(d.malformed())},
                             {"rate_limited", std::to_string(d.rate_limited())},
                             {"answer_addresses", std::to_string(d.answer_addresses())},
                             {"addresses_not_learned", std::to_string(d.addresses_not_learned())},
                             {"learned_hosts", std::to_string(d.learned_hosts())},
                             {"learned_hosts_most", std::to_string(d.learned_hosts_most())},
                             {"servfail_no_room", std::to_string(d.servfail_no_room())},
                             {"dropped_unread", std::to_string(d.dropped_unread())}});
  }
  return out;
}

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Printing a message we hold cannot fail for well-formed protos.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace sebpf::ctl
