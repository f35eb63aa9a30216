#include "datapath/tc_hooks.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "datapath/shared_layout.h"
#include "datapath/system.h"
#include "datapath/tc_filter_dump.h"

namespace sebpf::datapath {
namespace {

bpf_tc_attach_point guard_point(TcDirection d) {
  return d == TcDirection::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}
bpf_tc_attach_point track_point(TcDirection d) {
  return d == TcDirection::kIngress ? BPF_TC_EGRESS : BPF_TC_INGRESS;
}

}  // namespace

Status TcHooks::attach(uint32_t ifindex, TcDirection guard_direction) {
  const std::string where = "interface " + std::to_string(ifindex);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&hook);
  const bool created_qdisc = err == 0;
  if (err != 0 && err != -EEXIST) return Error::from_errno(err, "create clsact qdisc on " + where);

  auto attach_one = [&](bpf_tc_attach_point point, int prog_fd) {
    LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = static_cast<int>(ifindex), .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = handle_,
                .priority = priority_);
    return bpf_tc_attach(&h, &opts);
  };
  err = attach_one(guard_point(guard_direction), guard_fd_);
  if (err == 0) {
    err = attach_one(track_point(guard_direction), track_fd_);
    if (err != 0) detach_tc_filter(ifindex, guard_point(guard_direction), handle_, priority_);
  }
  if (err != 0) {
    if (created_qdisc) bpf_tc_hook_destroy(&hook);
    return Error::from_errno(err, "attach TC filter to " + where);
  }
  sebpf_ifname name{};
  if (if_indextoname(ifindex, name.name) != nullptr &&
      bpf_map_update_elem(names_fd_, &ifindex, &name, BPF_ANY) != 0) {
    const int update_err = errno;
    (void)detach(ifindex, guard_direction);
    if (created_qdisc) bpf_tc_hook_destroy(&hook);
    return Error::from_errno(update_err, "record the name of " + where);
  }
  return ok_status();
}

std::string TcHooks::check_same_interface(uint32_t ifindex) const {
  char now[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, now) == nullptr) return "the interface is gone";
  sebpf_ifname then{};
  if (bpf_map_lookup_elem(names_fd_, &ifindex, &then) != 0 ||
      std::strncmp(then.name, now, sizeof(then.name)) == 0) {
    return "";
  }
  // Another name: the interface was renamed, or deleted and a new one given
  // its ifindex. A new interface has none of our filters; a renamed one
  // still carries them (the kernel keeps qdiscs and filters across a
  // rename), and keeps its policy.
  if (carries_our_filter(ifindex)) {
    sebpf_ifname renamed{};
    static_assert(sizeof renamed.name >= sizeof now);
    std::memcpy(renamed.name, now, sizeof now);
    bpf_map_update_elem(names_fd_, &ifindex, &renamed, BPF_ANY);
    return "";
  }
  return "interface " + std::string(then.name, strnlen(then.name, sizeof(then.name))) +
         " is gone; its ifindex now belongs to " + now;
}

bool TcHooks::carries_our_filter(uint32_t ifindex) const {
  for (const bpf_tc_attach_point point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    if (filters_on_hook(ifindex, point, handle_, priority_) == HookFilters::kOurs) return true;
  }
  return false;
}

Result<RestoredFilters> TcHooks::restore(uint32_t ifindex, TcDirection guard_direction) {
  // A deleted interface loses its filters as it goes, and the events of
  // that bring this look: it may find the interface still there, and gone
  // by the detach or attach below, when there is nothing to put back.
  RestoredFilters restored;
  for (const bpf_tc_attach_point point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    const HookFilters found = filters_on_hook(ifindex, point, handle_, priority_, &owners_);
    if (found == HookFilters::kOurs) continue;
    // A filter replaced in place keeps its place in the order; one taken
    // off and added again is first of its priority. Ours is off until the
    // attach below, microseconds in which a frame that the filter ahead
    // passes on meets no guard of ours: a filter ahead that ends the hook
    // (the harm this undoes) passes none on.
    if (found == HookFilters::kOursBehindAnother) {
      const int err = detach_tc_filter(ifindex, point, handle_, priority_);
      if (err != 0) {
        if (!interface_exists(ifindex)) return RestoredFilters{};
        return Error::from_errno(
            err, "take our filter off interface " + std::to_string(ifindex) + " to put it first");
      }
    }
    restored.add(point == BPF_TC_INGRESS ? "ingress" : "egress", what_took_our_place(found));
  }
  // Replaces what is left of ours and puts back what is not: the same
  // attach as the first, with this process's programs.
  if (restored.empty()) return restored;
  if (Status attached = attach(ifindex, guard_direction); !attached.ok()) {
    if (!interface_exists(ifindex)) return RestoredFilters{};
    return attached.error();
  }
  return restored;
}

Status TcHooks::detach(uint32_t ifindex, TcDirection guard_direction) {
  int err = detach_tc_filter(ifindex, guard_point(guard_direction), handle_, priority_);
  const int err2 = detach_tc_filter(ifindex, track_point(guard_direction), handle_, priority_);
  if (err == 0) err = err2;
  if (err != 0) {
    return Error::from_errno(err, "detach TC filters from interface " + std::to_string(ifindex));
  }
  forget(ifindex);
  remove_empty_clsact(ifindex);  // the interface as it was before the attach
  return ok_status();
}

void TcHooks::forget(uint32_t ifindex) { bpf_map_delete_elem(names_fd_, &ifindex); }

}  // namespace sebpf::datapath
