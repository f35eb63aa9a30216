// A directory under /tmp for one test, removed with all it holds when its
// owner goes: however the test ends, a failed ASSERT's early return too.
#pragma once

#include <string>

namespace sebpf::testing {

class TestDir {
 public:
  // /tmp/<prefix>-XXXXXX, mode 0700 (mkdtemp). `path()` is empty if it
  // could not be made: check `made()` (ASSERT_TRUE) before using it.
  explicit TestDir(const std::string& prefix);
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  ~TestDir();

  bool made() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sebpf::testing
