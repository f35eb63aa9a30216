// Which socket owns the file at a path: the one a connect() to the path
// reaches, whatever path the others were bound to.
#include "daemon/unix_socket_file.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/unique_fd.h"
#include "support/sockets.h"
#include "support/test_dir.h"

namespace sebpf::daemon {
namespace {

using testing::unix_listener;

class UnixSocketFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.made());
    path_ = dir_.path() + "/api.sock";
  }

  // "yes", "no", or the error.
  std::string owns(const UniqueFd& fd) const {
    auto answer = owns_socket_file(fd.get(), path_);
    return !answer.ok() ? answer.error().message() : *answer ? "yes" : "no";
  }

  testing::TestDir dir_{"sebpf-socket-file"};
  std::string path_;
};

TEST_F(UnixSocketFileTest, TheSocketBoundThereOwnsTheFile) {
  UniqueFd first = unix_listener(path_);
  ASSERT_TRUE(first);
  EXPECT_EQ(owns(first), "yes");
}

TEST_F(UnixSocketFileTest, ASocketWhoseFileWasRemovedOwnsNoneThereAndNotItsSuccessors) {
  UniqueFd first = unix_listener(path_);
  ASSERT_TRUE(first);
  ASSERT_EQ(unlink(path_.c_str()), 0);
  EXPECT_EQ(owns(first), "no") << "the file is gone";
  UniqueFd second = unix_listener(path_);
  ASSERT_TRUE(second);
  EXPECT_EQ(owns(first), "no") << "bound to the same path";
  EXPECT_EQ(owns(second), "yes");
}

TEST_F(UnixSocketFileTest, AFileThatIsNotASocketIsNoSocketsFile) {
  UniqueFd first = unix_listener(path_);
  ASSERT_TRUE(first);
  ASSERT_EQ(unlink(path_.c_str()), 0);
  ASSERT_TRUE(std::filesystem::create_directory(path_));
  EXPECT_EQ(owns(first), "no");
}

TEST_F(UnixSocketFileTest, AnAbstractSocketOwnsNoFile) {
  UniqueFd other = unix_listener(path_);
  UniqueFd abstract(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;  // the family alone: the kernel picks an abstract address
  ASSERT_TRUE(other && abstract);
  ASSERT_EQ(bind(abstract.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)), 0);
  EXPECT_EQ(owns(abstract), "no");
}

}  // namespace
}  // namespace sebpf::daemon
