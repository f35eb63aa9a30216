// Another program's TC filter, put where one of ours is or ahead of it, as
// another product running `tc filter replace` or `tc filter add` would.
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

}  // namespace sebpf::testing
