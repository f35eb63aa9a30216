// The cookie that names a network namespace the way the BPF programs see
// it.
#pragma once

#include <cstdint>

#include "common/result.h"

namespace sebpf::datapath {

// The cookie of the network namespace `netns_fd` (an open
// /proc/<pid>/ns/net; -1: ours), which bpf_get_netns_cookie returns for a
// socket there: SO_NETNS_COOKIE of a socket made in it (Linux 5.14).
Result<uint64_t> netns_cookie(int netns_fd);

}  // namespace sebpf::datapath
