#include "datapath/packet_socket_guard.h"

#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "common/in_namespace.h"
#include "datapath/tc_filter_dump.h"

namespace sebpf::datapath {
namespace {

struct Interface {
  uint32_t ifindex;
  std::string name;
};

// The interfaces of the calling thread's network namespace.
Result<std::vector<Interface>> interfaces() {
  std::unique_ptr<struct if_nameindex, decltype(&if_freenameindex)> list(if_nameindex(),
                                                                         &if_freenameindex);
  if (!list) return Error::from_errno(errno, "list network interfaces");
  std::vector<Interface> out;
  for (const struct if_nameindex* i = list.get(); i->if_index != 0; ++i) {
    out.push_back({i->if_index, i->if_name});
  }
  return out;
}

// Work done in the network namespace `netns_fd` (-1: ours).
template <typename R, typename Work>
R in_workload_netns(int netns_fd, const Work& work) {
  return in_namespace<R>(netns_fd, CLONE_NEWNET, "the workload's network namespace", work);
}

bool interface_gone(int err) { return err == -ENODEV || err == -ENOENT || err == -ENXIO; }

}  // namespace

int PacketSocketGuard::attach(uint32_t ifindex) const {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = BPF_TC_EGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) return err;
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd_, .flags = BPF_TC_F_REPLACE, .handle = handle_,
              .priority = priority_);
  return bpf_tc_attach(&hook, &opts);
}

Status PacketSocketGuard::guard_interface(uint32_t ifindex) {
  const int err = attach(ifindex);
  if (err == 0) guarded_here_.insert(ifindex);
  if (err != 0 && !interface_gone(err)) {
    return Error::from_errno(
        err, "guard interface " + std::to_string(ifindex) + " against packet sockets");
  }
  return ok_status();
}

Result<std::string> PacketSocketGuard::restore_interface(uint32_t ifindex) {
  const HookFilters found = filters_on_hook(ifindex, BPF_TC_EGRESS, handle_, priority_, &owners_);
  const bool guarded_before = guarded_here_.contains(ifindex);
  if (found == HookFilters::kOurs) {
    guarded_here_.insert(ifindex);
    return std::string();
  }
  // Off and on again is first of its priority (see TcHooks::restore).
  int err = found == HookFilters::kOursBehindAnother
                ? detach_tc_filter(ifindex, BPF_TC_EGRESS, handle_, priority_)
                : 0;
  if (err == 0) err = attach(ifindex);
  if (interface_gone(err)) return std::string();
  if (err != 0) {
    return Error::from_errno(
        err, "guard interface " + std::to_string(ifindex) + " against packet sockets again");
  }
  guarded_here_.insert(ifindex);
  // Without the filter since it came (a start's look, or one after lost
  // events, found it before its RTM_NEWLINK did): new, not robbed.
  const bool never_had_ours = found == HookFilters::kNone || found == HookFilters::kOthersOnly;
  if (!guarded_before && never_had_ours) return std::string();
  return std::string(what_took_our_place(found));
}

Status PacketSocketGuard::guard(int netns_fd) {
  return in_workload_netns<Status>(netns_fd, [this, netns_fd]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(std::vector<Interface> all, interfaces());
    for (const Interface& i : all) {
      const int err = attach(i.ifindex);
      if (err != 0 && !interface_gone(err)) {
        return Error::from_errno(err, "guard interface " + i.name + " against packet sockets");
      }
      if (err == 0 && netns_fd < 0) guarded_here_.insert(i.ifindex);
    }
    return ok_status();
  });
}

Result<size_t> PacketSocketGuard::unguard(int netns_fd) {
  if (netns_fd < 0) guarded_here_.clear();
  return in_workload_netns<Result<size_t>>(netns_fd, [this]() -> Result<size_t> {
    SEBPF_ASSIGN_OR_RETURN(std::vector<Interface> all, interfaces());
    size_t removed = 0;
    for (const Interface& i : all) {
      // Only where ours is (or where that cannot be told): a detach where
      // it is not would have the kernel complain (a VM's tap carries
      // filters of ours with other handles; most interfaces have no clsact
      // qdisc).
      const HookFilters egress = filters_on_hook(i.ifindex, BPF_TC_EGRESS, handle_, priority_);
      if (egress != HookFilters::kOurs && egress != HookFilters::kUnknown) continue;
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(i.ifindex),
                  .attach_point = BPF_TC_EGRESS);
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle_, .priority = priority_);
      if (bpf_tc_detach(&hook, &opts) != 0) continue;  // not ours
      removed++;
      // The qdisc was made for this filter, unless another's is in it.
      remove_empty_clsact(i.ifindex);
    }
    return removed;
  });
}

}  // namespace sebpf::datapath
