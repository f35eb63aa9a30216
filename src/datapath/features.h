// Kernel feature probing: before loading, say exactly which needed program
// type, map type or helper the running kernel lacks.
#pragma once

#include "common/result.h"

namespace sebpf::datapath {

// Ok, or Errc::kUnsupported naming every missing feature and the kernel
// version that brings it.
Status probe_kernel_features();

// Whether cgroup_skb programs may call bpf_get_netns_cookie, which keeps
// reply flows of one network namespace from opening anything in another.
// Optional: without it the datapath works, with that weakness (the daemon
// warns).
bool cgroup_skb_has_netns_cookie();

}  // namespace sebpf::datapath
