// The file a daemon writes of what taught its learned hosts (state.proto
// LearnedChains): at each sweep after new learning, and when it stops with
// enforcement left in the kernel; and reading it back at the next start.
// Without it, a domain rule added after a restart or a crash could not
// tell which learned hosts the names it refuses taught (AttachmentManager
// then drops every host it knows nothing of).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/result.h"
#include "daemon/teaching_chains.h"

namespace sebpf::daemon {

// By attachment number.
using TeachersByAttachment = std::map<uint64_t, TeachingChains>;

// What one attachment's record says, read back: the chains, and the hosts
// with what taught them (`taught_by`, ids of `chains`) and until when the
// kernel held them as the file was written (`until`).
struct SavedTeachers {
  TeachingChains chains;
  LearnedHosts hosts;
};

// The hosts of `learned` that remember what taught them, with those chains.
std::string encode_learned_chains(const TeachersByAttachment& teachers,
                                  const std::map<uint64_t, LearnedHosts>& learned);
// Errc::kFailedPrecondition, saying what is wrong, when the bytes are not
// such a file this build can read.
Result<std::map<uint64_t, SavedTeachers>> decode_learned_chains(std::string_view bytes);

}  // namespace sebpf::daemon
