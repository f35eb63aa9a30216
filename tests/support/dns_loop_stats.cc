#include "support/dns_loop_stats.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace sebpf::testing {
namespace {

std::vector<std::filesystem::path> dns_loop_tasks(pid_t process) {
  std::vector<std::filesystem::path> loops;
  const std::string tasks = "/proc/" + std::to_string(process) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm == "sebpf-dns") loops.push_back(task.path());
  }
  return loops;
}

}  // namespace

uint64_t dns_loop_wakeups(pid_t process) {
  uint64_t sum = 0;
  for (const auto& task : dns_loop_tasks(process)) {
    std::ifstream status(task / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        sum += std::stoull(line.substr(line.find(':') + 1));
      }
    }
  }
  return sum;
}

uint64_t dns_loop_cpu_ticks(pid_t process) {
  uint64_t sum = 0;
  for (const auto& task : dns_loop_tasks(process)) {
    std::string stat;
    std::getline(std::ifstream(task / "stat"), stat);
    // After "(comm)": state is field 3; utime and stime are fields 14 and 15.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i >= 14) sum += std::stoull(field);
    }
  }
  return sum;
}

}  // namespace sebpf::testing
