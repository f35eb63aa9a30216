// The token bucket the rate limits share: refilled at its rate up to its
// most, what does not fit handed back, one token per take.
#include "common/token_bucket.h"

#include <gtest/gtest.h>

#include <chrono>

namespace sebpf {
namespace {

using std::chrono::milliseconds;

const TokenBucket::Clock::time_point kStart =
    TokenBucket::Clock::time_point() + std::chrono::hours(1);

TEST(TokenBucketTest, ANewBucketIsFullAtItsFirstRefill) {
  TokenBucket bucket;
  bucket.refill(10, 5, kStart);
  EXPECT_EQ(bucket.tokens, 5);
}

TEST(TokenBucketTest, RefillsAtItsRateUpToItsMostAndHandsBackTheRest) {
  TokenBucket bucket{.tokens = 0, .refilled = kStart};
  EXPECT_EQ(bucket.refill(10, 5, kStart + milliseconds(200)), 0);
  EXPECT_DOUBLE_EQ(bucket.tokens, 2);
  EXPECT_DOUBLE_EQ(bucket.refill(10, 5, kStart + milliseconds(1000)), 5) << "8 more, 3 fit";
  EXPECT_DOUBLE_EQ(bucket.tokens, 5);
}

TEST(TokenBucketTest, OneTokenPerTakeAndNoneWhenEmpty) {
  TokenBucket bucket{.tokens = 1.5, .refilled = kStart};
  EXPECT_TRUE(bucket.take());
  EXPECT_FALSE(bucket.take()) << "half a token is none";
  EXPECT_DOUBLE_EQ(bucket.tokens, 0.5);
}

// Threads read the clock before they take the lock: a `now` older than the
// last refill must neither add nor move the refill time back.
TEST(TokenBucketTest, AnOlderNowAddsNothing) {
  TokenBucket bucket{.tokens = 0, .refilled = kStart + milliseconds(500)};
  EXPECT_EQ(bucket.refill(10, 5, kStart), 0);
  EXPECT_EQ(bucket.tokens, 0);
  bucket.refill(10, 5, kStart + milliseconds(600));
  EXPECT_DOUBLE_EQ(bucket.tokens, 1) << "counted from the later refill";
}

}  // namespace
}  // namespace sebpf
