#!/usr/bin/env bash
# The one run command: installs dependencies, builds, and runs what exists.
# Today that is the datapath tool: with no arguments it loads the eBPF
# datapath (or adopts the pinned one) under /sys/fs/bpf/superebpf and prints
# its attachments; any arguments are passed to it (see --help). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target superebpf-datapath >/dev/null
if [ $# -eq 0 ]; then set -- status; fi
exec build/src/dptool/superebpf-datapath "$@"
