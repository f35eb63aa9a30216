// Where libbpf's own messages go. libbpf has one process-wide print hook;
// we install it once so its debug chatter stays out and its warnings
// (including the kernel verifier's log on a failed load) reach stderr.
#pragma once

namespace sebpf::datapath {

void install_libbpf_logger();

}  // namespace sebpf::datapath
