// How attachments share the learned-host table: each that learns may hold
// an equal part of it, whatever the others do.
#include "daemon/learned_share.h"

#include <gtest/gtest.h>

namespace sebpf::daemon {
namespace {

using Verdict = LearnedRoomVerdict;

size_t fail_if_asked() {
  ADD_FAILURE() << "the others' claim was asked for more than a refresh past the share";
  return 0;
}

TEST(LearnedShareTest, EachLearnerHoldsAnEqualPartUpToTheCap) {
  EXPECT_EQ((LearnedRoom{131072, 16384, 1}.share()), 16384U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 8}.share()), 16384U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 9}.share()), 14563U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 1024}.share()), 128U);
  EXPECT_EQ((LearnedRoom{40, 1000, 0}.share()), 40U) << "no learner yet: as if one";
}

TEST(LearnedShareTest, NewHostsFitUpToTheShareWhateverTheOthersHold) {
  const LearnedRoom room{40, 1000, 2};
  EXPECT_EQ(judge_learned_room(room, 0, 20, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 19, 1, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 20, 1, fail_if_asked), Verdict::kOverShare);
  EXPECT_EQ(judge_learned_room(room, 0, 21, fail_if_asked), Verdict::kOverShare);
}

TEST(LearnedShareTest, TheCapBindsNewHostsButNotRefreshes) {
  const LearnedRoom room{1000, 3, 1};
  EXPECT_EQ(judge_learned_room(room, 3, 1, fail_if_asked), Verdict::kOverMax);
  EXPECT_EQ(judge_learned_room(room, 0, 4, fail_if_asked), Verdict::kOverMax);
  EXPECT_EQ(judge_learned_room(room, 5, 0, [] { return size_t{0}; }), Verdict::kFits)
      << "held past a cap lowered across a restart: still refreshed";
}

// An attachment that took room before the others came must not keep it by
// asking its names again, or they would wait for it forever.
TEST(LearnedShareTest, ARefreshPastTheShareWaitsWhileTheOthersLackRoomForTheirShares) {
  const LearnedRoom room{40, 1000, 2};
  EXPECT_EQ(judge_learned_room(room, 40, 0, [] { return size_t{20}; }), Verdict::kOverShare)
      << "the other learner holds nothing yet";
  EXPECT_EQ(judge_learned_room(room, 20, 0, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 30, 0, [] { return size_t{60}; }), Verdict::kOverShare)
      << "claims past the table";
  const LearnedRoom capped{100, 30, 2};
  EXPECT_EQ(judge_learned_room(capped, 40, 0, [] { return size_t{30}; }), Verdict::kFits)
      << "past a lowered cap, with room left for the other's share";
}

}  // namespace
}  // namespace sebpf::daemon
