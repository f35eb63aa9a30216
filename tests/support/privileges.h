// Privileged tests run as root (CI is root) and skip elsewhere, saying why.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace sebpf::testing {

// Empty when the process may load BPF, create namespaces and cgroups;
// otherwise the reason it may not.
std::string missing_privileges();

}  // namespace sebpf::testing

#define SEBPF_REQUIRE_PRIVILEGES()                                                      \
  do {                                                                                  \
    const std::string sebpf_why_ = ::sebpf::testing::missing_privileges();              \
    if (!sebpf_why_.empty()) GTEST_SKIP() << "privileged test skipped: " << sebpf_why_; \
  } while (0)
