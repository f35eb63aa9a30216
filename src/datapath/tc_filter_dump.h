// What an interface's clsact qdisc holds, read with a netlink dump of its
// filters, and the removals that go with it. libbpf asks for one filter by
// handle instead, and the kernel's "not found" then reaches our log as a
// line of plain text: a dump lets us look without asking for what may not
// be there.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>

#include "datapath/program_ownership.h"

namespace sebpf::datapath {

// `kOurs`: a filter with the given handle and priority is on the hook,
// running a program of ours. `kReplaced`: one is there, running another's
// program (`tc filter replace` at our handle and priority).
// `kOursBehindAnother`: ours is there, but a filter that runs another's
// program runs before it: cls_bpf runs the newest filter of a priority
// first, so another program's `tc filter add ... pref 1` goes ahead of
// ours, and a verdict of its (TC_ACT_OK) ends the hook before ours runs.
enum class HookFilters { kNone, kOurs, kReplaced, kOursBehindAnother, kOthersOnly, kUnknown };

// What a hook held instead of our filter, for the log: "missing",
// "replaced", "behind_another" or "unreadable"; empty for kOurs.
const char* what_took_our_place(HookFilters found);

// `owners` null: any filter at our handle and priority is ours, whatever
// it runs and whatever runs before it.
HookFilters filters_on_hook(uint32_t ifindex, bpf_tc_attach_point hook, uint32_t handle,
                            uint32_t priority, const ProgramOwnership* owners = nullptr);

// Removes the filter with `handle` and `priority` from the hook: 0, also
// when the filter, its qdisc or the interface is gone already; else the
// negative errno.
int detach_tc_filter(uint32_t ifindex, bpf_tc_attach_point hook, uint32_t handle,
                     uint32_t priority);

// Removes the interface's clsact qdisc if neither of its hooks holds a
// filter of anyone's: we create it for our filters, and leave none behind
// once they are gone.
void remove_empty_clsact(uint32_t ifindex);

}  // namespace sebpf::datapath
