#include "test_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <system_error>
#include <vector>

namespace sebpf::testing {

TestDir::TestDir(const std::string& prefix) {
  const std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (mkdtemp(name.data()) != nullptr) path_ = name.data();
}

TestDir::~TestDir() {
  if (path_.empty()) return;
  // The error_code form: a destructor must not throw.
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace sebpf::testing
