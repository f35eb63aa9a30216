// Work done in another network namespace, and the cookie that names one
// the way the BPF programs see it.
#pragma once

#include <sched.h>

#include <cerrno>
#include <cstdint>
#include <thread>

#include "common/result.h"

namespace sebpf::datapath {

// Runs `work` in the network namespace `netns_fd` (an open
// /proc/<pid>/ns/net; -1: ours) and returns what it returns. setns()
// changes only the calling thread's namespace, and sockets (the netlink
// ones libbpf opens too) belong to the namespace they are made in: a
// short-lived thread does the work there.
template <typename R, typename Work>
R in_network_namespace(int netns_fd, const Work& work) {
  if (netns_fd < 0) return work();
  R done = Error(Errc::kInternal, "no result");
  std::thread([&] {
    if (setns(netns_fd, CLONE_NEWNET) != 0) {
      done = Error::from_errno(errno, "enter the workload's network namespace");
      return;
    }
    done = work();
  }).join();
  return done;
}

// The cookie of the network namespace `netns_fd` (-1: ours), which
// bpf_get_netns_cookie returns for a socket there: SO_NETNS_COOKIE of a
// socket made in it (Linux 5.14).
Result<uint64_t> netns_cookie(int netns_fd);

}  // namespace sebpf::datapath
