#include "datapath/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace sebpf::datapath {
namespace {

int print(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  const int n = vsnprintf(line, sizeof(line), format, args);
  // We create the clsact qdisc unconditionally and accept "already there";
  // the kernel's note about it is not a problem worth a line.
  if (std::strstr(line, "Exclusivity flag on") != nullptr) return n;
  return std::fputs(line, stderr) < 0 ? -1 : n;
}

}  // namespace

void install_libbpf_logger() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print); });
}

}  // namespace sebpf::datapath
