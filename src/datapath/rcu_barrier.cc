#include "datapath/rcu_barrier.h"

#include <bpf/bpf.h>

namespace sebpf::datapath {

Result<RcuBarrier> RcuBarrier::create(int barrier_map_fd) {
  // Matches struct sebpf_barrier_inner in bpf/sebpf_maps.bpf.h.
  UniqueFd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, "sebpf_barrier_i", sizeof(__u32), sizeof(__u32),
                                1, nullptr));
  if (!inner) return Error::from_errno(errno, "create the RCU barrier's inner map");
  return RcuBarrier(barrier_map_fd, std::move(inner));
}

Status RcuBarrier::wait() const {
  const __u32 zero = 0;
  const int inner_fd = inner_.get();
  if (bpf_map_update_elem(map_fd_, &zero, &inner_fd, BPF_ANY) != 0) {
    return Error::from_errno(errno, "wait for running BPF programs");
  }
  return ok_status();
}

}  // namespace sebpf::datapath
