// Arbitrary bytes as the daemon's config file: parsing never crashes or
// throws, and every rejection (of a key, or of keys together) is an
// invalid-argument error with a message, as the daemon reports it
// at start and at reload.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/daemon_config.h"

namespace {

void check_rejection(const sebpf::Error& e) {
  if (e.code() != sebpf::Errc::kInvalidArgument) std::abort();
  const std::string& m = e.message();
  if (m.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  sebpf::daemon::DaemonConfig config;
  auto parsed = sebpf::daemon::parse_daemon_config(text, config);
  if (!parsed.ok()) {
    check_rejection(parsed.error());
    return 0;
  }
  auto valid = sebpf::daemon::validate_daemon_config(config);
  if (!valid.ok()) check_rejection(valid.error());
  return 0;
}
