// The daemon's paths must be out of other users' reach: every component
// owned by root (or the daemon's user), writable by no one else, except a
// sticky directory above (/tmp); links are followed.
#include "daemon/trusted_paths.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "support/test_dir.h"

namespace sebpf::daemon {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

class TrustedPathsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.made()); }

  std::string make_dir(const std::string& name, mode_t mode) const {
    const std::string path = dir() + "/" + name;
    fs::create_directories(path);
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string make_file(const std::string& name, mode_t mode) const {
    const std::string path = dir() + "/" + name;
    std::ofstream(path) << "{}\n";
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  // "" if trusted, else the error's message.
  static std::string refusal(const std::string& path) {
    const Status status = check_trusted_path(path, "state_dir", "the state");
    return status.ok() ? "" : status.error().message();
  }

  const std::string& dir() const { return dir_.path(); }

  testing::TestDir dir_{"sebpf-trusted"};
};

TEST_F(TrustedPathsTest, APrivateDirectoryAndWhatIsNotMadeYetUnderItAreTrusted) {
  EXPECT_EQ(refusal(dir()), "");
  EXPECT_EQ(refusal(dir() + "/not/made/yet"), "");
  EXPECT_EQ(refusal(make_dir("a/b", 0755)), "");
  EXPECT_EQ(refusal(make_file("policy.yaml", 0644)), "");
}

TEST_F(TrustedPathsTest, WhatEveryUserCanWriteIsRefusedNamingItAndTheFix) {
  const std::string open = make_dir("open", 0777);
  const std::string message = refusal(open + "/state");
  EXPECT_NE(message.find("state_dir " + open + "/state: " + open + " is writable by every user"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("another user could change the state"), std::string::npos) << message;
  EXPECT_NE(message.find("o-w " + open + "\" or choose another path"), std::string::npos)
      << message;
  EXPECT_NE(refusal(make_file("policy.yaml", 0646)), "") << "a file too";
}

TEST_F(TrustedPathsTest, AStickyDirectoryMayBeSharedAboveThePathButNotBeIt) {
  const std::string sticky = make_dir("sticky", 01777);
  EXPECT_EQ(refusal(sticky + "/state"), "") << "others cannot move or remove what we make there";
  make_dir("sticky/state", 0755);
  EXPECT_EQ(refusal(sticky + "/state"), "");
  EXPECT_NE(refusal(sticky), "") << "others could make names inside it: ours";
}

TEST_F(TrustedPathsTest, AGroupOtherThanRootsMayNotWrite) {
  const gid_t group = geteuid() == 0 ? kNobody : getegid();
  if (group == 0) GTEST_SKIP() << "needs a group other than root's to own a directory";
  const std::string shared = make_dir("shared", 0775);
  ASSERT_EQ(chown(shared.c_str(), static_cast<uid_t>(-1), group), 0);
  const std::string message = refusal(shared);
  EXPECT_NE(message.find("is writable by group " + std::to_string(group)), std::string::npos)
      << message;
  EXPECT_NE(message.find("chmod g-w " + shared), std::string::npos) << message;
  ASSERT_EQ(chmod(shared.c_str(), 0755), 0);
  EXPECT_EQ(refusal(shared), "");
}

TEST_F(TrustedPathsTest, RootsGroupMayWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can give a directory to root's group";
  const std::string shared = make_dir("shared", 0775);
  ASSERT_EQ(chown(shared.c_str(), 0, 0), 0);
  EXPECT_EQ(refusal(shared), "");
}

TEST_F(TrustedPathsTest, WhatAnotherUserOwnsIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can give a file to another user";
  const std::string theirs = make_dir("theirs", 0755);
  ASSERT_EQ(chown(theirs.c_str(), kNobody, kNobody), 0);
  const std::string message = refusal(theirs + "/state");
  EXPECT_NE(message.find(theirs + " is owned by uid 65534, not root"), std::string::npos)
      << message;
  EXPECT_NE(message.find("chown root " + theirs), std::string::npos) << message;
}

TEST_F(TrustedPathsTest, ALinkIsFollowedAndWhatItPointsToChecked) {
  const std::string open = make_dir("open", 0777);
  const std::string good = make_dir("good", 0755);
  fs::create_directory_symlink(open, dir() + "/to-open");
  fs::create_directory_symlink(good, dir() + "/to-good");
  EXPECT_NE(refusal(dir() + "/to-open").find(open + " is writable by every user"),
            std::string::npos);
  EXPECT_NE(refusal(dir() + "/to-open/state"), "") << "a directory above, not sticky";
  EXPECT_EQ(refusal(dir() + "/to-good/state"), "");
  // ".." after a link leaves the link's target, as the kernel resolves it.
  const std::string inner = make_dir("good/inner", 0755);
  fs::create_directory_symlink(inner, dir() + "/to-inner");
  EXPECT_NE(refusal(dir() + "/to-inner/../../open/state"), "") << "the target's parent's sibling";
  EXPECT_EQ(refusal(dir() + "/to-inner/../inner/state"), "");
  // A link to what is not made yet: its target's path is checked all the
  // same, so that no one else can make it first.
  fs::create_directory_symlink(open + "/later", dir() + "/to-later");
  EXPECT_NE(refusal(dir() + "/to-later/state"), "");
  fs::create_directory_symlink("good/later", dir() + "/relative");
  EXPECT_EQ(refusal(dir() + "/relative/state"), "") << "relative to the link's directory";
  fs::create_directory_symlink(dir() + "/loop", dir() + "/loop");
  EXPECT_NE(refusal(dir() + "/loop/state").find("follow"), std::string::npos);
}

TEST_F(TrustedPathsTest, ARelativePathIsRefused) {
  EXPECT_NE(refusal("var/lib/superebpf").find("must be an absolute path"), std::string::npos);
}

}  // namespace
}  // namespace sebpf::daemon
