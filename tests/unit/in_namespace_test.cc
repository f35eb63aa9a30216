// Work done in another namespace: here when none is given, and not at all
// when the one given cannot be entered.
#include "common/in_namespace.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/unique_fd.h"

namespace sebpf {
namespace {

TEST(InNamespaceTest, WithoutANamespaceTheWorkIsDoneOnTheCallersThread) {
  const std::thread::id caller = std::this_thread::get_id();
  const Result<bool> here = in_namespace<Result<bool>>(
      -1, CLONE_NEWNET, "nothing",
      [&]() -> Result<bool> { return std::this_thread::get_id() == caller; });
  ASSERT_TRUE(here.ok()) << here.error().message();
  EXPECT_TRUE(*here);
}

TEST(InNamespaceTest, ANamespaceThatCannotBeEnteredIsNamedAndTheWorkNotDone) {
  const UniqueFd not_a_namespace(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(not_a_namespace);
  bool done = false;
  const Status entered =
      in_namespace<Status>(not_a_namespace.get(), CLONE_NEWNET, "the test's namespace", [&] {
        done = true;
        return ok_status();
      });
  ASSERT_FALSE(entered.ok());
  EXPECT_NE(entered.error().message().find("enter the test's namespace"), std::string::npos)
      << entered.error().message();
  EXPECT_FALSE(done);
}

}  // namespace
}  // namespace sebpf
