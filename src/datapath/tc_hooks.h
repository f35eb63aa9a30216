// Attaching the TC programs to an interface's clsact qdisc: the guard on
// the hook that carries the guest's outgoing traffic, the flow tracker on
// the other. Filters stay in the kernel after we exit; a new process
// replaces them in place (atomically) with its own programs.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "datapath/program_ownership.h"
#include "datapath/types.h"

namespace sebpf::datapath {

class TcHooks {
 public:
  // names_fd: the sebpf_if_names map, where the name of each attached
  // interface is kept so that a later process can tell its interface from a
  // new one that got the same ifindex. `owners` (which outlives us) tells
  // our programs from another's, in our filters' place or ahead of them.
  TcHooks(int guard_fd, int track_fd, uint32_t handle, uint32_t priority, int names_fd,
          const ProgramOwnership& owners)
      : guard_fd_(guard_fd),
        track_fd_(track_fd),
        handle_(handle),
        priority_(priority),
        names_fd_(names_fd),
        owners_(owners) {}

  // Both filters or neither. Replaces filters of ours already there.
  Status attach(uint32_t ifindex, TcDirection guard_direction);
  // Removes our filters; an interface or filter that is gone is fine.
  Status detach(uint32_t ifindex, TcDirection guard_direction);
  // Drops what we know of an ifindex without touching the interface that
  // now has it.
  void forget(uint32_t ifindex);

  // Empty when `ifindex` is still the interface that was attached (under
  // the same name, or renamed: then the new name is recorded); else why
  // not (gone, or its ifindex now names another interface).
  std::string check_same_interface(uint32_t ifindex) const;

  // Puts back the filters of an attached interface (the guard on one hook,
  // the tracker on the other) where a hook lacks ours: both when something
  // else deleted the clsact qdisc. A filter at our handle and priority that
  // runs another's program lacks ours too, and so does a hook where another
  // program's filter runs before ours (ours goes in again, first). Returns
  // those hooks and what each held; empty when both carry ours. A hook
  // whose filters cannot be read counts as lacking it: attaching again
  // costs little. An interface gone before the attach lacks nothing.
  Result<RestoredFilters> restore(uint32_t ifindex, TcDirection guard_direction);

 private:
  // Whether one of the interface's hooks has a filter at our handle and
  // priority, whatever program it runs.
  bool carries_our_filter(uint32_t ifindex) const;

  int guard_fd_;
  int track_fd_;
  uint32_t handle_;
  uint32_t priority_;
  int names_fd_;
  const ProgramOwnership& owners_;
};

}  // namespace sebpf::datapath
