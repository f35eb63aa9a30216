// libbpf's own messages: while a sink lives (the daemon's structured log)
// they go to it, whole and without their last newline; otherwise to
// stderr as libbpf writes them.
#include "datapath/libbpf_log.h"

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sebpf::datapath {
namespace {

// libbpf warns that it cannot open the file, naming it.
void open_missing_object() {
  bpf_object* object = bpf_object__open_file("/nonexistent/sebpf-log-test.bpf.o", nullptr);
  EXPECT_EQ(object, nullptr);
  bpf_object__close(object);
}

TEST(LibbpfLogTest, MessagesGoToTheSinkWhileItLivesAndToStderrOtherwise) {
  install_libbpf_logger();
  std::vector<std::pair<bool, std::string>> seen;
  {
    const LibbpfLogSink sink(
        [&](bool warning, std::string_view message) { seen.emplace_back(warning, message); });
    open_missing_object();
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen[0].first) << "a warning";
  EXPECT_NE(seen[0].second.find("/nonexistent/sebpf-log-test.bpf.o"), std::string::npos)
      << seen[0].second;
  EXPECT_FALSE(seen[0].second.ends_with('\n'));

  const size_t before = seen.size();
  ::testing::internal::CaptureStderr();
  open_missing_object();
  const std::string written = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(seen.size(), before) << "the sink is gone";
  EXPECT_NE(written.find("/nonexistent/sebpf-log-test.bpf.o"), std::string::npos) << written;
}

}  // namespace
}  // namespace sebpf::datapath
