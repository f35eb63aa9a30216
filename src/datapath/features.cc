#include "datapath/features.h"

#include <bpf/libbpf.h>
#include <sys/utsname.h>

#include <string>
#include <vector>

namespace sebpf::datapath {
namespace {

struct ProgTypeNeed {
  bpf_prog_type type;
  const char* what;
};
struct MapTypeNeed {
  bpf_map_type type;
  const char* what;
};
struct HelperNeed {
  bpf_prog_type prog_type;
  bpf_func_id helper;
  const char* what;
};

constexpr ProgTypeNeed kProgTypes[] = {
    {BPF_PROG_TYPE_SCHED_CLS, "TC classifier programs (Linux 4.1)"},
    {BPF_PROG_TYPE_CGROUP_SKB, "cgroup_skb programs (Linux 4.10)"},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup connect/sendmsg programs (Linux 4.18)"},
    {BPF_PROG_TYPE_CGROUP_SOCK, "cgroup sock_create programs (Linux 4.10)"},
    {BPF_PROG_TYPE_CGROUP_SOCKOPT, "cgroup setsockopt programs (Linux 5.3)"},
};
constexpr MapTypeNeed kMapTypes[] = {
    {BPF_MAP_TYPE_HASH, "hash maps"},
    {BPF_MAP_TYPE_LPM_TRIE, "LPM trie maps (Linux 4.11)"},
    {BPF_MAP_TYPE_LRU_HASH, "LRU hash maps (Linux 4.10)"},
    {BPF_MAP_TYPE_PERCPU_ARRAY, "per-CPU arrays (Linux 4.6)"},
    {BPF_MAP_TYPE_SK_STORAGE, "socket-local storage (Linux 5.2)"},
    {BPF_MAP_TYPE_ARRAY_OF_MAPS, "arrays of maps (Linux 4.12)"},
    {BPF_MAP_TYPE_RINGBUF, "ring buffers (Linux 5.8)"},
};
constexpr HelperNeed kHelpers[] = {
    {BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_ktime_get_boot_ns, "bpf_ktime_get_boot_ns (Linux 5.8)"},
    {BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_ktime_get_coarse_ns,
     "bpf_ktime_get_coarse_ns, the flows' clock (Linux 5.11)"},
    {BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_loop, "bpf_loop (Linux 5.17)"},
    {BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_loop, "bpf_loop (Linux 5.17)"},
    {BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_skb_ancestor_cgroup_id,
     "bpf_skb_ancestor_cgroup_id in cgroup_skb (Linux 4.19)"},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_current_ancestor_cgroup_id,
     "bpf_get_current_ancestor_cgroup_id in cgroup programs (Linux 5.7)"},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie,
     "bpf_get_netns_cookie in socket hooks (Linux 5.7)"},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_sk_storage_get,
     "bpf_sk_storage_get in socket hooks, for transparent DNS (Linux 5.10)"},
    {BPF_PROG_TYPE_CGROUP_SOCK, BPF_FUNC_sk_storage_get,
     "bpf_sk_storage_get in sock_create, to know raw sockets from birth (Linux 5.11)"},
    {BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_sk_storage_get,
     "bpf_sk_storage_get in cgroup_skb (Linux 5.2)"},
};
// The kernel that brings the newest need above (bpf_loop). Necessary, not
// sufficient: an older verifier may still refuse a program the kernels
// tested on accept, and loading then says which.
constexpr const char* kOldestKernel = "5.17";

}  // namespace

Status probe_kernel_features() {
  std::vector<std::string> missing;
  for (const auto& need : kProgTypes) {
    if (libbpf_probe_bpf_prog_type(need.type, nullptr) != 1) missing.emplace_back(need.what);
  }
  for (const auto& need : kMapTypes) {
    if (libbpf_probe_bpf_map_type(need.type, nullptr) != 1) missing.emplace_back(need.what);
  }
  for (const auto& need : kHelpers) {
    if (libbpf_probe_bpf_helper(need.prog_type, need.helper, nullptr) != 1) {
      missing.emplace_back(need.what);
    }
  }
  if (missing.empty()) return ok_status();
  utsname uts{};
  uname(&uts);
  std::string msg = std::string("kernel ") + uts.release + " lacks what the datapath needs:";
  for (const auto& m : missing) msg += " " + m + ";";
  msg += std::string(" Linux ") + kOldestKernel + " or newer with BPF enabled is required";
  return Error(Errc::kUnsupported, std::move(msg));
}

bool cgroup_skb_has_netns_cookie() {
  return libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_get_netns_cookie, nullptr) == 1;
}

}  // namespace sebpf::datapath
