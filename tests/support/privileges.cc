#include "privileges.h"

#include <unistd.h>

namespace sebpf::testing {

std::string missing_privileges() {
  if (geteuid() != 0) {
    return "needs root (BPF programs, cgroups, network namespaces); run scripts/test.sh as root";
  }
  return "";
}

}  // namespace sebpf::testing
