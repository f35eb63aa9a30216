// Attaching the TC programs to an interface's clsact qdisc: the guard on
// the hook that carries the guest's outgoing traffic, the flow tracker on
// the other. Filters stay in the kernel after we exit; a new process
// replaces them in place (atomically) with its own programs.
#pragma once

#include <cstdint>

#include "common/result.h"
#include "datapath/types.h"

namespace sebpf::datapath {

class TcHooks {
 public:
  TcHooks(int guard_fd, int track_fd, uint32_t handle, uint32_t priority)
      : guard_fd_(guard_fd), track_fd_(track_fd), handle_(handle), priority_(priority) {}

  // Both filters or neither. Replaces filters of ours already there.
  Status attach(uint32_t ifindex, TcDirection guard_direction);
  // Removes our filters; an interface or filter that is gone is fine.
  Status detach(uint32_t ifindex, TcDirection guard_direction);

 private:
  int guard_fd_;
  int track_fd_;
  uint32_t handle_;
  uint32_t priority_;
};

}  // namespace sebpf::datapath
