#include "datapath/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>

namespace sebpf::datapath {
namespace {

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
  return std::fputs(line.c_str(), stderr) < 0 ? -1 : n;
}

}  // namespace

void install_libbpf_logger() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print); });
}

}  // namespace sebpf::datapath
