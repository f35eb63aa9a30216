// Work done in another namespace of the calling process's kind.
#pragma once

#include <sched.h>

#include <cerrno>
#include <string>
#include <thread>

#include "common/result.h"

namespace sebpf {

// Runs `work` in the namespace `ns_fd` (an open /proc/<pid>/ns/<kind>) of
// type `ns_type` (CLONE_NEWNET, CLONE_NEWCGROUP), or here when `ns_fd` is
// negative, and returns what it returns: an error naming `what` when the
// namespace cannot be entered. setns() changes only the calling thread's
// namespace, and what is made there (a socket, a netlink socket libbpf
// opens) belongs to it: a short-lived thread does the work, and the
// caller's thread stays where it is.
template <typename R, typename Work>
R in_namespace(int ns_fd, int ns_type, const std::string& what, const Work& work) {
  if (ns_fd < 0) return work();
  R done = Error(Errc::kInternal, "no result");
  std::thread([&] {
    if (setns(ns_fd, ns_type) != 0) {
      done = Error::from_errno(errno, "enter " + what);
      return;
    }
    done = work();
  }).join();
  return done;
}

}  // namespace sebpf
