// Another program's doings with our hooks: a TC filter put where one of
// ours is or ahead of it, as another product running `tc filter replace`
// or `tc filter add` would; a program of its own put in one of our
// cgroup links.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <string>

namespace sebpf::testing {

// Puts a program that passes every frame (TC_ACT_OK, which ends the hook)
// at `handle` on `dev`'s `hook`, at our priority: in place of the filter
// with that handle (it stays, and runs this program instead), or, with a
// handle no filter has, as a new filter, which cls_bpf runs before the
// others of its priority, ours included. Our handles: the interface
// guard's and tracker's is the datapath's tc_handle, the packet socket
// filter's the next. Fails the test (fatally) if the program cannot be
// loaded or attached.
void put_pass_all_filter(const std::string& dev, bpf_tc_attach_point hook, uint32_t handle);

// Puts a program that lets everything through (returns 1) in the cgroup
// link pinned at `pin` (BPF_LINK_UPDATE), in place of the one it runs: the
// link stays on its cgroup. Fails the test (fatally) if it cannot.
void put_pass_all_program_in_link(const std::string& pin);

}  // namespace sebpf::testing
