#include "daemon/attachment_record.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "superebpf/state/v1/state.pb.h"

namespace sebpf::daemon {

namespace {

namespace state_v1 = ::superebpf::state::v1;
using google::protobuf::util::TimeUtil;

constexpr uint32_t kStateFormat = 1;

google::protobuf::Timestamp to_timestamp(WallClock::time_point t) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

WallClock::time_point from_timestamp(const google::protobuf::Timestamp& t) {
  return WallClock::time_point(std::chrono::duration_cast<WallClock::duration>(
      std::chrono::nanoseconds(TimeUtil::TimestampToNanoseconds(t))));
}

Error damaged(const std::string& what) {
  return Error(Errc::kFailedPrecondition, "state file content is invalid: " + what);
}

Result<AttachmentRecord> record_from_state(const state_v1::AttachmentRecord& in) {
  const v1::Attachment& a = in.attachment();
  AttachmentRecord r;
  SEBPF_ASSIGN_OR_RETURN(r.number, attachment_id_from_api(a.id(), "id"));
  switch (a.type()) {
    case v1::TARGET_TYPE_CGROUP:
      r.kind = datapath::TargetKind::kCgroup;
      break;
    case v1::TARGET_TYPE_INTERFACE:
      r.kind = datapath::TargetKind::kInterface;
      break;
    default:
      return damaged(a.id() + " has no target type");
  }
  r.target = a.target();
  r.metadata = Metadata(a.metadata().begin(), a.metadata().end());
  if (!a.dns().ipv4().empty()) {
    SEBPF_ASSIGN_OR_RETURN(r.dns.v4, net::IpAddress::parse(a.dns().ipv4()));
  }
  if (!a.dns().ipv6().empty()) {
    SEBPF_ASSIGN_OR_RETURN(r.dns.v6, net::IpAddress::parse(a.dns().ipv6()));
  }
  r.dns.port = static_cast<uint16_t>(a.dns().port());
  r.created = from_timestamp(a.created_at());
  r.applied_policy = a.applied_policy();
  r.direction =
      in.tc_direction() == 1 ? datapath::TcDirection::kEgress : datapath::TcDirection::kIngress;
  r.key = {r.kind, in.kernel_id()};
  r.serial = in.serial();
  // Stored policies were validated when they came in; expires_at is the
  // stored form of a TTL, so read it back directly.
  const v1::Policy& p = in.policy();
  SEBPF_ASSIGN_OR_RETURN(r.policy.mode, mode_from_api(p.mode(), "policy.mode"));
  SEBPF_ASSIGN_OR_RETURN(r.policy.dns_mode, mode_from_api(p.dns_mode(), "policy.dns_mode"));
  for (const v1::CidrRule& c : p.cidrs()) {
    SEBPF_ASSIGN_OR_RETURN(net::IpPrefix prefix, cidr_from_api(c.cidr(), "cidr"));
    SEBPF_ASSIGN_OR_RETURN(auto action, action_from_api(c.action(), "action", false));
    CidrRule rule{prefix, *action, std::nullopt};
    if (c.has_expires_at()) rule.expires = from_timestamp(c.expires_at());
    r.policy.cidrs.push_back(rule);
  }
  for (const v1::DomainRule& d : p.domains()) {
    SEBPF_ASSIGN_OR_RETURN(DomainRule rule, domain_rule_from_api(d, "domain"));
    r.policy.domains.push_back(rule);
  }
  return r;
}

}  // namespace

void attachment_to_api(const AttachmentRecord& r, v1::Attachment* out) {
  out->set_id(r.id());
  out->set_type(r.kind == datapath::TargetKind::kCgroup ? v1::TARGET_TYPE_CGROUP
                                                        : v1::TARGET_TYPE_INTERFACE);
  out->set_target(r.target);
  out->mutable_metadata()->insert(r.metadata.begin(), r.metadata.end());
  if (r.dns.v4) out->mutable_dns()->set_ipv4(r.dns.v4->to_string());
  if (r.dns.v6) out->mutable_dns()->set_ipv6(r.dns.v6->to_string());
  out->mutable_dns()->set_port(r.dns.port);
  *out->mutable_created_at() = to_timestamp(r.created);
  out->set_applied_policy(r.applied_policy);
}

void DaemonStateData::note_ended(const AttachmentRecord& record, std::string reason) {
  ended.push_back({record.number, record.target, std::move(reason)});
  if (ended.size() > kMaxEnded) ended.erase(ended.begin());
}

const EndedAttachment* DaemonStateData::find_ended(uint64_t number) const {
  const auto found = std::find_if(ended.rbegin(), ended.rend(),
                                  [&](const EndedAttachment& e) { return e.number == number; });
  return found == ended.rend() ? nullptr : &*found;
}

std::string encode_state(const DaemonStateData& state) {
  state_v1::DaemonState out;
  out.set_format(kStateFormat);
  out.set_next_id(state.next_number);
  for (const AttachmentRecord& r : state.records) {
    state_v1::AttachmentRecord* rec = out.add_attachments();
    attachment_to_api(r, rec->mutable_attachment());
    rec->set_kernel_id(r.key.id);
    rec->set_serial(r.serial);
    rec->set_tc_direction(r.direction == datapath::TcDirection::kEgress ? 1 : 0);
    policy_to_api(r.policy, rec->mutable_policy());
  }
  for (const EndedAttachment& e : state.ended) {
    state_v1::EndedAttachment* ended = out.add_ended();
    ended->set_attachment(e.number);
    ended->set_target(e.target);
    ended->set_reason(e.reason);
  }
  return out.SerializeAsString();
}

Result<DaemonStateData> decode_state(std::string_view bytes) {
  state_v1::DaemonState in;
  if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return damaged("not a DaemonState message");
  }
  if (in.format() != kStateFormat) {
    return damaged("format " + std::to_string(in.format()) + " (this build reads " +
                   std::to_string(kStateFormat) + ")");
  }
  DaemonStateData state;
  state.next_number = in.next_id();
  for (const auto& rec : in.attachments()) {
    auto record = record_from_state(rec);
    if (!record.ok()) return damaged(record.error().message());
    if (record->number >= state.next_number) return damaged(record->id() + " is above next_id");
    state.records.push_back(std::move(*record));
  }
  // Only ever a message, so not judged: what this build would not write
  // (more than it keeps) loses the oldest.
  const int ended = in.ended_size();
  for (int i = std::max(0, ended - static_cast<int>(DaemonStateData::kMaxEnded)); i < ended; ++i) {
    const auto& e = in.ended(i);
    state.ended.push_back({e.attachment(), e.target(), e.reason()});
  }
  return state;
}

}  // namespace sebpf::daemon
