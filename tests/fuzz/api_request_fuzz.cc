// Arbitrary bytes as the daemon's untrusted input: an AttachRequest as it
// arrives over the API (its policy and metadata are checked), and the
// payload of each file of its state directory (the state file, the
// learned-chains file). Nothing crashes; a rejection is always a clear error
// of the expected kind; what is accepted survives the round trip through
// the state file unchanged.
#include <cstdint>
#include <cstdlib>

#include "daemon/api_convert.h"
#include "daemon/attachment_record.h"
#include "daemon/teaching_chains_file.h"

namespace {

using namespace sebpf::daemon;

void check_request(const uint8_t* data, size_t size) {
  v1::AttachRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return;
  const auto now = WallClock::time_point(std::chrono::seconds(1'800'000'000));
  auto metadata = metadata_from_api(req.metadata(), "metadata");
  if (!metadata.ok() && metadata.error().code() != sebpf::Errc::kInvalidArgument) std::abort();
  auto policy = policy_from_api(req.policy(), "policy", now);
  if (!policy.ok()) {
    if (policy.error().code() != sebpf::Errc::kInvalidArgument) std::abort();
    return;
  }
  if (!metadata.ok()) return;
  DaemonStateData state;
  state.next_number = 2;
  AttachmentRecord record;
  record.number = 1;
  record.target = "tap0";
  record.metadata = *metadata;
  record.policy = *policy;
  state.records.push_back(record);
  auto back = decode_state(encode_state(state));
  if (!back.ok() || back->records.size() != 1) std::abort();
  if (back->records[0].policy != record.policy) std::abort();
  if (back->records[0].metadata != record.metadata) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_request(data, size);
  auto state = decode_state(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!state.ok() && state.error().code() != sebpf::Errc::kFailedPrecondition) std::abort();
  auto chains = decode_learned_chains(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!chains.ok() && chains.error().code() != sebpf::Errc::kFailedPrecondition) std::abort();
  return 0;
}
