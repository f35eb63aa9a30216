// Waits until no BPF program that started before the call is still running.
// Used after switching an attachment to a new rule set and before deleting
// the old one, so a packet that already read the old switch never finds its
// rules gone.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

namespace sebpf::datapath {

class RcuBarrier {
 public:
  // barrier_map_fd: an ARRAY_OF_MAPS with one slot (sebpf_barrier).
  static Result<RcuBarrier> create(int barrier_map_fd);

  // Writes the slot; the kernel runs synchronize_rcu() before returning
  // from any update of a map-of-maps.
  Status wait() const;

 private:
  RcuBarrier(int map_fd, UniqueFd inner) : map_fd_(map_fd), inner_(std::move(inner)) {}
  int map_fd_;
  UniqueFd inner_;
};

}  // namespace sebpf::datapath
