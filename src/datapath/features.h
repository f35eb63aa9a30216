// Kernel feature probing: before loading, say exactly which needed program
// type, map type or helper the running kernel lacks.
#pragma once

#include "common/result.h"

namespace sebpf::datapath {

// Ok, or Errc::kUnsupported naming every missing feature and the kernel
// version that brings it.
Status probe_kernel_features();

}  // namespace sebpf::datapath
