#include "datapath/tc_filter_dump.h"

#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <span>

#include "common/netlink_messages.h"
#include "common/unique_fd.h"

namespace sebpf::datapath {

HookFilters filters_on_hook(uint32_t ifindex, bpf_tc_attach_point hook, uint32_t handle,
                            uint32_t priority, const ProgramOwnership* owners) {
  const uint32_t parent =
      TC_H_MAKE(TC_H_CLSACT, hook == BPF_TC_INGRESS ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  UniqueFd nl(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!nl) return HookFilters::kUnknown;
  struct {
    nlmsghdr header;
    tcmsg tc;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = RTM_GETTFILTER;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.tc.tcm_family = AF_UNSPEC;
  request.tc.tcm_ifindex = static_cast<int>(ifindex);
  request.tc.tcm_parent = parent;
  if (send(nl.get(), &request, sizeof(request), 0) != static_cast<ssize_t>(sizeof(request))) {
    return HookFilters::kUnknown;
  }
  bool any = false;
  bool another_runs_first = false;
  alignas(nlmsghdr) char buf[16384];
  while (true) {
    const ssize_t n = recv(nl.get(), buf, sizeof(buf), 0);
    if (n <= 0) return HookFilters::kUnknown;
    const std::span<const char> datagram(buf, static_cast<size_t>(n));
    size_t offset = 0;
    while (const nlmsghdr* h = next_netlink_message(datagram, offset)) {
      if (h->nlmsg_type == NLMSG_DONE) return any ? HookFilters::kOthersOnly : HookFilters::kNone;
      if (h->nlmsg_type != RTM_NEWTFILTER) return HookFilters::kUnknown;
      any = true;
      // A filter's handle, and its priority in tcm_info's upper half.
      const auto* tc = netlink_payload<tcmsg>(*h);
      if (tc == nullptr) return HookFilters::kUnknown;
      if (tc->tcm_handle == handle && TC_H_MAJ(tc->tcm_info) >> 16 == priority) {
        if (owners == nullptr) return HookFilters::kOurs;
        if (!owners->is_ours(tc_filter_program_id(*h))) return HookFilters::kReplaced;
        return another_runs_first ? HookFilters::kOursBehindAnother : HookFilters::kOurs;
      }
      // Filters come in the order they run. Handle 0 heads each priority's
      // list and is no filter.
      if (owners != nullptr && tc->tcm_handle != 0 && !another_runs_first) {
        another_runs_first = !owners->is_ours(tc_filter_program_id(*h));
      }
    }
    if (offset < datagram.size()) return HookFilters::kUnknown;  // a malformed message
  }
}

const char* what_took_our_place(HookFilters found) {
  switch (found) {
    case HookFilters::kOurs:
      return "";
    case HookFilters::kReplaced:
      return "replaced";
    case HookFilters::kOursBehindAnother:
      return "behind_another";
    case HookFilters::kUnknown:
      return "unreadable";
    case HookFilters::kNone:
    case HookFilters::kOthersOnly:
      break;
  }
  return "missing";
}

int detach_tc_filter(uint32_t ifindex, bpf_tc_attach_point hook, uint32_t handle,
                     uint32_t priority) {
  LIBBPF_OPTS(bpf_tc_hook, where, .ifindex = static_cast<int>(ifindex), .attach_point = hook);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  const int err = bpf_tc_detach(&where, &opts);
  return (err == -ENOENT || err == -ENODEV || err == -EINVAL) ? 0 : err;
}

void remove_empty_clsact(uint32_t ifindex) {
  // kNone: no filter at all, whichever handle is asked for.
  if (filters_on_hook(ifindex, BPF_TC_INGRESS, 0, 0) != HookFilters::kNone ||
      filters_on_hook(ifindex, BPF_TC_EGRESS, 0, 0) != HookFilters::kNone) {
    return;
  }
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  (void)bpf_tc_hook_destroy(&hook);
}

}  // namespace sebpf::datapath
