// What superebpfctl prints: aligned tables for people, or the API's own
// JSON (protobuf's JSON mapping, proto field names) for programs.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "superebpf/v1/daemon.pb.h"

namespace sebpf::ctl {

namespace v1 = ::superebpf::v1;

std::string attachments_table(const v1::ListResponse& list);
std::string attachment_text(const v1::Attachment& attachment);
std::string policy_text(const v1::Policy& policy);
std::string counters_text(const v1::Counters& counters);
std::string to_json(const google::protobuf::Message& message);

// Columns padded to their widest cell, two spaces apart; the last column
// is not padded. Exposed for tests.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace sebpf::ctl
