// The state file: what was written comes back; anything else -- a torn
// write, a flipped bit, a stranger's file -- is reported, never trusted.
#include "state/state_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace sebpf::state {
namespace {

namespace fs = std::filesystem;

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("sebpf-state-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "state").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string raw() {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream data;
    data << in.rdbuf();
    return data.str();
  }
  void set_raw(const std::string& data) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << data;
  }
  void expect_damaged(const std::string& why) {
    auto r = read_state_file(path_);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Errc::kFailedPrecondition);
    EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("was not used"), std::string::npos);
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(StateFileTest, RoundTripAndReplace) {
  ASSERT_TRUE(write_state_file(path_, "first").ok());
  EXPECT_EQ(*read_state_file(path_), "first");
  const std::string binary("\0\1\2\xff payload", 12);
  ASSERT_TRUE(write_state_file(path_, binary).ok());
  EXPECT_EQ(*read_state_file(path_), binary);
  ASSERT_TRUE(write_state_file(path_, "").ok());
  EXPECT_EQ(*read_state_file(path_), "");
  EXPECT_EQ(fs::status(path_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

TEST_F(StateFileTest, MissingIsNotFound) {
  auto r = read_state_file(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kNotFound);
}

TEST_F(StateFileTest, TruncatedFileIsReported) {
  ASSERT_TRUE(write_state_file(path_, "attachments and policies").ok());
  const std::string full = raw();
  set_raw(full.substr(0, full.size() - 3));
  expect_damaged("header says");
  set_raw(full.substr(0, 10));
  expect_damaged("shorter than its header");
}

TEST_F(StateFileTest, FlippedBitIsReported) {
  ASSERT_TRUE(write_state_file(path_, "attachments and policies").ok());
  std::string data = raw();
  data[data.size() - 5] ^= 0x01;
  set_raw(data);
  expect_damaged("checksum mismatch");
}

TEST_F(StateFileTest, ForeignOrNewerFilesAreReported) {
  set_raw("{\"attachments\": []}\n and some more text to pass the header");
  expect_damaged("not a Super eBPF state file");
  ASSERT_TRUE(write_state_file(path_, "x").ok());
  std::string data = raw();
  data[8] = 9;  // format version
  set_raw(data);
  expect_damaged("format version 9");
}

TEST_F(StateFileTest, AnInterruptedWriteLeavesTheOldStateInForce) {
  ASSERT_TRUE(write_state_file(path_, "old").ok());
  // A crash mid-write leaves only the temporary file behind.
  std::ofstream(path_ + ".tmp") << "SEBPFST\nhalf";
  EXPECT_EQ(*read_state_file(path_), "old");
  ASSERT_TRUE(write_state_file(path_, "new").ok());
  EXPECT_EQ(*read_state_file(path_), "new");
}

// Another program removed the directory since the daemon made it.
TEST_F(StateFileTest, ARemovedDirectoryIsMadeAgain) {
  const std::string path = (dir_ / "gone" / "deeper" / "state").string();
  ASSERT_TRUE(write_state_file(path, "kept").ok());
  EXPECT_EQ(*read_state_file(path), "kept");
}

TEST_F(StateFileTest, UnwritableDirectoryIsAnError) {
  std::ofstream(dir_ / "a-file") << "not a directory";
  auto s = write_state_file((dir_ / "a-file" / "state").string(), "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("a-file/state.tmp"), std::string::npos) << s.error().message();
}

}  // namespace
}  // namespace sebpf::state
