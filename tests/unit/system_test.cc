// Host checks that need no privileges: bad cgroup paths, unknown
// interfaces, mode names. Each error must say what is wrong.
#include "datapath/system.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "datapath/types.h"

namespace sebpf::datapath {
namespace {

TEST(SystemTest, FindsTheCgroup2MountFromProcMounts) {
  auto mount = find_cgroup2_mount();
  if (!mount.ok()) GTEST_SKIP() << "this machine has no cgroup v2: " << mount.error().message();
  EXPECT_EQ(mount->front(), '/');
}

TEST(SystemTest, Cgroup2MountIsReadFromTheMountTable) {
  const std::string path = ::testing::TempDir() + "/sebpf-mounts";
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::trunc) << text; };
  write(
      "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
      "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n");
  EXPECT_EQ(*find_cgroup2_mount(path), "/sys/fs/cgroup/unified");
  write("none /mnt/with\\040space cgroup2 rw 0 0\n");
  EXPECT_EQ(*find_cgroup2_mount(path), "/mnt/with space");
  write("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n");
  auto none = find_cgroup2_mount(path);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), Errc::kUnsupported);
  EXPECT_NE(none.error().message().find("mount -t cgroup2"), std::string::npos);
  std::remove(path.c_str());
}

// What decides where a process may move others: the root of each cgroup
// v2 mount it sees, and whether the hierarchy is mounted with nsdelegate.
TEST(SystemTest, Cgroup2MountsAreReadFromMountinfo) {
  const std::string path = ::testing::TempDir() + "/sebpf-mountinfo";
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::trunc) << text; };
  write(
      "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n"
      "26 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
      "27 1 0:23 /machine.slice/ctr /mnt/with\\040space rw shared:10 master:9 - cgroup2 none "
      "rw\n"
      "28 1 8:1 / / rw - ext4 /dev/vda1 rw\n"
      "29 1 0:23 /a /mnt/empty-source rw - cgroup2  rw,nsdelegate\n");
  const auto mounts = cgroup2_mounts(path);
  ASSERT_TRUE(mounts.has_value());
  ASSERT_EQ(mounts->size(), 3U);
  EXPECT_EQ((*mounts)[0].root, "/");
  EXPECT_EQ((*mounts)[0].mount_point, "/sys/fs/cgroup");
  EXPECT_TRUE((*mounts)[0].ns_delegate);
  EXPECT_EQ((*mounts)[1].root, "/machine.slice/ctr");
  EXPECT_EQ((*mounts)[1].mount_point, "/mnt/with space");
  EXPECT_FALSE((*mounts)[1].ns_delegate);
  EXPECT_EQ((*mounts)[2].mount_point, "/mnt/empty-source");
  EXPECT_TRUE((*mounts)[2].ns_delegate);
  write("28 1 8:1 / / rw - ext4 /dev/vda1 rw\n");
  EXPECT_TRUE(cgroup2_mounts(path)->empty());
  // Unread rather than half read: its caller then assumes the most.
  for (const std::string bad : {"25 1 0:23 / /sys/fs/cgroup rw shared:9 cgroup2 cgroup2 rw\n",
                                "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2\n",
                                "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw extra\n",
                                "25 1 0:23 / /sys/fs/cgroup - cgroup2 cgroup2 rw\n", "25 1\n"}) {
    write(bad);
    EXPECT_FALSE(cgroup2_mounts(path).has_value()) << bad;
  }
  std::remove(path.c_str());
  EXPECT_FALSE(cgroup2_mounts(path).has_value());
}

TEST(SystemTest, CgroupPathErrors) {
  auto missing = open_cgroup("/sys/fs/cgroup/unified/definitely-not-there-sebpf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Errc::kNotFound);
  EXPECT_NE(missing.error().message().find("does not exist"), std::string::npos);

  auto relative = open_cgroup("my/cgroup");
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.error().code(), Errc::kInvalidArgument);

  auto not_cgroup = open_cgroup("/tmp");
  ASSERT_FALSE(not_cgroup.ok());
  EXPECT_EQ(not_cgroup.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(not_cgroup.error().message().find("not a cgroup v2 directory"), std::string::npos);

  auto file = open_cgroup("/etc/hostname");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), Errc::kInvalidArgument);
}

TEST(SystemTest, RefusesTheRootCgroup) {
  auto mount = find_cgroup2_mount();
  if (!mount.ok()) GTEST_SKIP() << "no cgroup v2";
  auto root = open_cgroup(*mount);
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(root.error().message().find("whole host"), std::string::npos);
  for (const std::string& spelled : {*mount + "/", *mount + "/.", *mount + "//"}) {
    auto again = open_cgroup(spelled);
    ASSERT_FALSE(again.ok()) << spelled;
    EXPECT_NE(again.error().message().find("whole host"), std::string::npos) << spelled;
  }
}

TEST(SystemTest, InterfaceErrors) {
  auto unknown = lookup_interface("sebpfnone0");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), Errc::kNotFound);
  EXPECT_EQ(lookup_interface("").error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(lookup_interface("a/b").error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(lookup_interface("way-too-long-interface-name").error().code(), Errc::kInvalidArgument);
  auto lo = lookup_interface("lo");
  ASSERT_FALSE(lo.ok());
  EXPECT_NE(lo.error().message().find("loopback"), std::string::npos);
}

TEST(SystemTest, BpffsOutsideSysFsBpfIsExplained) {
  auto s = ensure_bpffs_dir("/tmp/sebpf-not-bpffs");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), Errc::kFailedPrecondition);
  EXPECT_NE(s.error().message().find("mount -t bpf"), std::string::npos);
  EXPECT_EQ(ensure_bpffs_dir("relative").error().code(), Errc::kInvalidArgument);
}

// What the privilege check and the bypass check read of a status file:
// hex digits between blanks, and nothing else taken for a set.
TEST(SystemTest, ACapabilitySetIsReadAsTheStatusFileWritesIt) {
  EXPECT_EQ(parse_capability_set("\t000001ffffffffff"), 0x1ffffffffffULL);
  EXPECT_EQ(parse_capability_set("\t0000000000000000\n"), 0U);
  EXPECT_EQ(parse_capability_set("2000"), 0x2000U) << "CAP_NET_RAW alone";
  for (const char* bad : {"", "\t", "\tzz", "\t-1", "\t0x10", "\t10 20", "\t1ffffffffffffffff0"}) {
    EXPECT_FALSE(parse_capability_set(bad).has_value()) << "\"" << bad << "\"";
  }
  const std::string status = ::testing::TempDir() + "/status." + std::to_string(getpid());
  std::ofstream(status) << "Name:\tagent\nCapEff:\t0000000000003000\nCapBnd:\tnone\n";
  auto effective = capability_set(status, "CapEff");
  ASSERT_TRUE(effective.ok()) << effective.error().message();
  EXPECT_EQ(*effective, 0x3000U);
  EXPECT_FALSE(capability_set(status, "CapBnd").ok()) << "a bad value is no set";
  EXPECT_FALSE(capability_set(status, "CapPrm").ok()) << "nor is a missing field";
  std::remove(status.c_str());
}

TEST(TypesTest, ModeNamesRoundTripAndBadNamesAreRejected) {
  for (Mode m : {Mode::kDisabled, Mode::kAllowlist, Mode::kDenylist, Mode::kBlockAll}) {
    EXPECT_EQ(*parse_mode(mode_name(m)), m);
  }
  auto bad = parse_mode("allow-list");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("allowlist"), std::string::npos);
}

TEST(TypesTest, EveryReasonHasAName) {
  for (int r = 0; r < SEBPF_REASON_COUNT; ++r) {
    EXPECT_NE(reason_name(static_cast<Reason>(r)), "unknown") << r;
  }
}

}  // namespace
}  // namespace sebpf::datapath
