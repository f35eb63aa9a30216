// The filter that stops packet sockets (bpf: sebpf_tc_packet_sockets) on
// the egress of every interface of a network namespace a cgroup workload
// sends from. Cgroup programs are never shown a packet socket's frames; a
// TC filter on the device is, and finds the sending socket's cgroup. The
// filter is the same for every attachment (it looks the cgroup up), so a
// namespace is guarded once, however many attachments send from it.
// Filters stay in the kernel after we exit, as the interface guard's do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "common/result.h"
#include "datapath/program_ownership.h"

namespace sebpf::datapath {

class PacketSocketGuard {
 public:
  // `owners` (which outlives us) tells our program from another's, in our
  // filter's place or ahead of it.
  PacketSocketGuard(int prog_fd, uint32_t handle, uint32_t priority, const ProgramOwnership& owners)
      : prog_fd_(prog_fd), handle_(handle), priority_(priority), owners_(owners) {}

  // Puts the filter on every interface (loopback included: a frame sent
  // there arrives as if from anyone) of the namespace `netns_fd` (an open
  // /proc/<pid>/ns/net), or of ours when it is -1, replacing ours already
  // there. An interface that disappears meanwhile is skipped; any other
  // failure is an error naming the interface.
  Status guard(int netns_fd);
  // The same for one interface of our namespace (a new one).
  Status guard_interface(uint32_t ifindex);
  // Guards one interface of our namespace again if it lacks the filter
  // (something else deleted it, or the clsact qdisc, or put another
  // program in its place), or puts it first again where another program's
  // filter runs before it. What the hook held instead (as
  // what_took_our_place); empty when it had ours. An interface that is
  // gone lacks nothing, and neither does one we never guarded (made after
  // guard(-1), before its RTM_NEWLINK reached us or with that event lost):
  // it is guarded now, and nothing was taken from it.
  Result<std::string> restore_interface(uint32_t ifindex);
  // An interface of our namespace left it (deleted or moved away): its
  // index, should another take it, is not one we guarded.
  void forget_interface(uint32_t ifindex) { guarded_here_.erase(ifindex); }
  // Removes it from every interface of the namespace `netns_fd` (-1:
  // ours), with the clsact qdisc where nothing else is left in it; how
  // many interfaces had it.
  Result<size_t> unguard(int netns_fd);

 private:
  // 0, or the negative errno of the clsact qdisc or filter.
  int attach(uint32_t ifindex) const;

  int prog_fd_;
  uint32_t handle_;
  uint32_t priority_;
  const ProgramOwnership& owners_;
  // The interfaces of our namespace we put the filter on: only these can
  // have lost it to another program.
  std::set<uint32_t> guarded_here_;
};

}  // namespace sebpf::datapath
