// What a process's DNS event-loop threads (named "sebpf-dns") have done
// since they started, read from /proc: for tests of how often the loops
// sleep and how much CPU they burn.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace sebpf::testing {

// Times the loops have gone to sleep and been woken (voluntary context
// switches).
uint64_t dns_loop_wakeups(pid_t process);

// CPU time the loops have used, in clock ticks (1/100 s).
uint64_t dns_loop_cpu_ticks(pid_t process);

}  // namespace sebpf::testing
