// Waiting, in tests, for what another process (the daemon, the kernel) does
// in its own time.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace sebpf::testing {

// Whether `holds()` comes true within `timeout`, asked every 10 ms.
inline bool within(std::chrono::milliseconds timeout, const std::function<bool()>& holds) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!holds()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace sebpf::testing
