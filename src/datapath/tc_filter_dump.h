// What an interface's clsact qdisc holds, read with a netlink dump of its
// filters. libbpf asks for one filter by handle instead, and the kernel's
// "not found" then reaches our log as a line of plain text: a dump lets us
// look without asking for what may not be there.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>

namespace sebpf::datapath {

// `kOurs`: a filter with the given handle and priority is on the hook.
enum class HookFilters { kNone, kOurs, kOthersOnly, kUnknown };

HookFilters filters_on_hook(uint32_t ifindex, bpf_tc_attach_point hook, uint32_t handle,
                            uint32_t priority);

// Removes the interface's clsact qdisc if neither of its hooks holds a
// filter of anyone's: we create it for our filters, and leave none behind
// once they are gone.
void remove_empty_clsact(uint32_t ifindex);

}  // namespace sebpf::datapath
