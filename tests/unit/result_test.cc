#include "common/result.h"

#include <gtest/gtest.h>

namespace sebpf {
namespace {

Result<int> half(int v) {
  if (v % 2) return Error(Errc::kInvalidArgument, std::to_string(v) + " is odd");
  return v / 2;
}

Result<int> quarter(int v) {
  SEBPF_ASSIGN_OR_RETURN(int h, half(v));
  return half(h);
}

Status check_even(int v) {
  SEBPF_RETURN_IF_ERROR(half(v));
  return ok_status();
}

TEST(ResultTest, ValueAndErrorPropagate) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "3 is odd");
  EXPECT_TRUE(check_even(4).ok());
  EXPECT_FALSE(check_even(5).ok());
}

TEST(ResultTest, ErrnoMapsToCodes) {
  EXPECT_EQ(Error::from_errno(EPERM, "x").code(), Errc::kPermissionDenied);
  EXPECT_EQ(Error::from_errno(-ENOENT, "x").code(), Errc::kNotFound);
  EXPECT_EQ(Error::from_errno(E2BIG, "x").code(), Errc::kResourceExhausted);
  EXPECT_EQ(Error::from_errno(EOPNOTSUPP, "x").code(), Errc::kUnsupported);
  EXPECT_EQ(Error::from_errno(EIO, "x").code(), Errc::kInternal);
  EXPECT_EQ(Error::from_errno(ENOENT, "open foo").message(), "open foo: No such file or directory");
}

TEST(ResultTest, ErrnoTextNamesKnownValuesAndNumbersUnknownOnes) {
  EXPECT_EQ(errno_text(ECONNREFUSED), "Connection refused");
  EXPECT_EQ(errno_text(0), "Success");
  EXPECT_EQ(errno_text(100000), "error 100000");
  EXPECT_EQ(errno_text(-1), "error -1");
}

TEST(ResultTest, WrapKeepsCodeAndAddsContext) {
  const Error e = Error(Errc::kNotFound, "gone").wrap("attach cgroup /x");
  EXPECT_EQ(e.code(), Errc::kNotFound);
  EXPECT_EQ(e.message(), "attach cgroup /x: gone");
}

}  // namespace
}  // namespace sebpf
