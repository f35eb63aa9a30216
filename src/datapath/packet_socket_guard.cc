#include "datapath/packet_socket_guard.h"

#include <bpf/libbpf.h>
#include <net/if.h>
#include <sched.h>

#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

bool interface_gone(int err) { return err == -ENODEV || err == -ENOENT || err == -ENXIO; }

}  // namespace

Status PacketSocketGuard::guard(int netns_fd) const {
  const auto guard_all = [this]() -> Status {
    SEBPF_ASSIGN_OR_RETURN(std::vector<Interface> all, interfaces());
    for (const Interface& i : all) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(i.ifindex),
                  .attach_point = BPF_TC_EGRESS);
      int err = bpf_tc_hook_create(&hook);
      if (err == -EEXIST) err = 0;
      if (err == 0) {
        LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd_, .flags = BPF_TC_F_REPLACE,
                    .handle = handle_, .priority = priority_);
        err = bpf_tc_attach(&hook, &opts);
      }
      if (err != 0 && !interface_gone(err)) {
        return Error::from_errno(err, "guard interface " + i.name + " against packet sockets");
      }
    }
    return ok_status();
  };
  if (netns_fd < 0) return guard_all();
  // setns() changes only the calling thread's namespace, and the netlink
  // sockets libbpf opens belong to the namespace they are made in: a
  // short-lived thread does the work there.
  Status done = ok_status();
  std::thread([&] {
    if (setns(netns_fd, CLONE_NEWNET) != 0) {
      done = Error::from_errno(errno, "enter the workload's network namespace");
      return;
    }
    done = guard_all();
  }).join();
  return done;
}

void PacketSocketGuard::unguard_own_namespace() const {
  auto all = interfaces();
  if (!all.ok()) return;
  for (const Interface& i : *all) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(i.ifindex),
                .attach_point = BPF_TC_EGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle_, .priority = priority_);
    (void)bpf_tc_detach(&hook, &opts);
  }
}

}  // namespace sebpf::datapath
