// How attachments share the learned-host table: each that learns may hold
// an equal part of it, whatever the others do, and one part stays free.
#include "daemon/learned_share.h"

#include <gtest/gtest.h>

namespace sebpf::daemon {
namespace {

using Verdict = LearnedRoomVerdict;

size_t fail_if_asked() {
  ADD_FAILURE() << "the others' claim was asked for more than a refresh past the share";
  return 0;
}

TEST(LearnedShareTest, EachLearnerHoldsAnEqualPartUpToTheCapAndOnePartStaysFree) {
  EXPECT_EQ((LearnedRoom{131072, 16384, 1}.share()), 16384U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 7}.share()), 16384U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 8}.share()), 14563U);
  EXPECT_EQ((LearnedRoom{131072, 16384, 1024}.share()), 127U);
  EXPECT_EQ((LearnedRoom{40, 1000, 1}.share()), 20U);
  EXPECT_EQ((LearnedRoom{40, 1000, 0}.share()), 20U) << "no learner yet: as if one";
  EXPECT_EQ((LearnedRoom{1, 1000, 1}.share()), 0U);
}

TEST(LearnedShareTest, NewHostsFitUpToTheShareWhateverTheOthersHold) {
  const LearnedRoom room{40, 1000, 2};  // 13 each
  EXPECT_EQ(judge_learned_room(room, 0, 13, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 12, 1, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 13, 1, fail_if_asked), Verdict::kOverShare);
  EXPECT_EQ(judge_learned_room(room, 0, 14, fail_if_asked), Verdict::kOverShare);
}

TEST(LearnedShareTest, TheCapBindsNewHostsButNotRefreshes) {
  const LearnedRoom room{1000, 3, 1};
  EXPECT_EQ(judge_learned_room(room, 3, 1, fail_if_asked), Verdict::kOverMax);
  EXPECT_EQ(judge_learned_room(room, 0, 4, fail_if_asked), Verdict::kOverMax);
  EXPECT_EQ(judge_learned_room(room, 5, 0, [] { return size_t{0}; }), Verdict::kFits)
      << "held past a cap lowered across a restart: still refreshed";
}

// An attachment that took room before the others came must not keep it by
// asking its names again, or they (and a replace) would wait for it forever.
TEST(LearnedShareTest, ARefreshPastTheShareWaitsWhileTheOthersOrTheFreePartLackRoom) {
  const LearnedRoom room{40, 1000, 2};  // 13 each
  EXPECT_EQ(judge_learned_room(room, 20, 0, [] { return size_t{13}; }), Verdict::kOverShare)
      << "the other learner holds nothing yet; 20 + 13 + 13 free is past 40";
  EXPECT_EQ(judge_learned_room(room, 13, 0, fail_if_asked), Verdict::kFits);
  EXPECT_EQ(judge_learned_room(room, 14, 0, [] { return size_t{60}; }), Verdict::kOverShare)
      << "claims past the table";
  const LearnedRoom capped{100, 30, 2};  // 30 each: the cap binds
  EXPECT_EQ(judge_learned_room(capped, 40, 0, [] { return size_t{30}; }), Verdict::kFits)
      << "past a lowered cap, with room left for the other's share and the free part";
  EXPECT_EQ(judge_learned_room(capped, 41, 0, [] { return size_t{30}; }), Verdict::kOverShare);
}

}  // namespace
}  // namespace sebpf::daemon
