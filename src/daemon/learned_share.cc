#include "daemon/learned_share.h"

#include <algorithm>

namespace sebpf::daemon {

size_t LearnedRoom::share() const {
  return std::min(max_per_attachment, table_hosts / (std::max<size_t>(learners, 1) + 1));
}

LearnedRoomVerdict judge_learned_room(const LearnedRoom& room, size_t held, size_t new_hosts,
                                      absl::FunctionRef<size_t()> others_claim) {
  const size_t after = held + new_hosts;
  if (after <= room.share()) return LearnedRoomVerdict::kFits;
  if (new_hosts > 0) {
    return after > room.max_per_attachment ? LearnedRoomVerdict::kOverMax
                                           : LearnedRoomVerdict::kOverShare;
  }
  const size_t claimed = others_claim() + room.share();
  return claimed <= room.table_hosts && held <= room.table_hosts - claimed
             ? LearnedRoomVerdict::kFits
             : LearnedRoomVerdict::kOverShare;
}

}  // namespace sebpf::daemon
