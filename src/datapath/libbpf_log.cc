#include "datapath/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace sebpf::datapath {
namespace {

// The hook is process-wide, so is where it sends.
std::mutex sink_mu;
LibbpfLogSink::Sink sink;  // guarded by sink_mu; empty: stderr

int print(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  // Whole, however long: a rejected program's verifier log comes as one
  // message, with the kernel's reason at its end.
  va_list measure;
  va_copy(measure, args);
  const int n = vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  if (n < 0) return n;
  std::string line(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(line.data(), line.size(), format, args);
  line.resize(static_cast<size_t>(n));
  // We create the clsact qdisc unconditionally and accept "already there";
  // the kernel's note about it is not a problem worth a line.
  if (line.find("Exclusivity flag on") != std::string::npos) return n;
  // libbpf 1.1 fails to parse some extended error attributes the kernel
  // adds to a netlink error (seen on 6.18); the error itself comes back
  // to the caller, which reports it.
  if (line.find("Failed to parse extended error attributes") != std::string::npos) return n;
  std::lock_guard lock(sink_mu);
  if (!sink) return std::fputs(line.c_str(), stderr) < 0 ? -1 : n;
  std::string_view message = line;
  if (message.ends_with('\n')) message.remove_suffix(1);
  sink(level == LIBBPF_WARN, message);
  return n;
}

}  // namespace

LibbpfLogSink::LibbpfLogSink(Sink s) {
  std::lock_guard lock(sink_mu);
  sink = std::move(s);
}

LibbpfLogSink::~LibbpfLogSink() {
  std::lock_guard lock(sink_mu);
  sink = nullptr;
}

void install_libbpf_logger() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print); });
}

}  // namespace sebpf::datapath
