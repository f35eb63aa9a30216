// Everything the daemon knows about one attachment, and its encoding in
// the state file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "daemon/api_convert.h"
#include "daemon/policy_model.h"
#include "datapath/types.h"

namespace sebpf::daemon {

struct AttachmentRecord {
  uint64_t number = 0;  // the API id is "att-<number>"
  datapath::TargetKind kind = datapath::TargetKind::kCgroup;
  std::string target;  // canonical cgroup path, or interface name
  Metadata metadata;
  datapath::DnsEndpoint dns;
  WallClock::time_point created{};
  std::string applied_policy;  // the policy-file entry applied at attach
  datapath::TcDirection direction = datapath::TcDirection::kIngress;
  // Where the kernel holds it: cgroup id or ifindex, and the datapath's
  // serial, which tells a reused ifindex from the interface we attached.
  datapath::AttachmentKey key;
  uint32_t serial = 0;
  Policy policy;
  // Cgroups: the network namespace (its nsfs inode) whose interfaces carry
  // the packet socket filter for this workload; 0 until guarded. Not
  // stored: guarded again at every start.
  uint64_t guarded_netns = 0;
  // Cgroups: the endpoint could not be moved to guarded_netns when the
  // workload was followed there (its port held there, say): the next
  // look moves it. Not stored: a start opens it where the workload is.
  bool endpoint_left_behind = false;
  // Interfaces: the one whose addresses the DNS endpoint is served on and
  // whose traffic its sockets take (dns_device_of: the bridge the
  // interface is a port of, else itself). Not stored: read again at every
  // start and when the interface changes.
  uint32_t dns_device = 0;

  std::string id() const { return attachment_id_to_api(number); }
};

// An attachment the daemon ended without a Detach call (its target went,
// or it could not be attached again), and why: what a call naming it is
// told instead of a bare NOT_FOUND.
struct EndedAttachment {
  uint64_t number = 0;
  std::string target;
  std::string reason;
  bool operator==(const EndedAttachment&) const = default;
};

struct DaemonStateData {
  // The newest this many ended attachments are kept: each is written with
  // every save of the state (about 100 bytes).
  static constexpr size_t kMaxEnded = 512;

  uint64_t next_number = 1;
  std::vector<AttachmentRecord> records;
  std::vector<EndedAttachment> ended;  // oldest first

  // Remembers why the daemon ended `record`, forgetting the oldest past
  // kMaxEnded.
  void note_ended(const AttachmentRecord& record, std::string reason);
  // The newest entry for `number`, or null.
  const EndedAttachment* find_ended(uint64_t number) const;
};

std::string encode_state(const DaemonStateData& state);
// Errc::kFailedPrecondition when the bytes are not a state this build can
// read; the CRC of the state file has already ruled out damage.
Result<DaemonStateData> decode_state(std::string_view bytes);

void attachment_to_api(const AttachmentRecord& record, v1::Attachment* out);

}  // namespace sebpf::daemon
