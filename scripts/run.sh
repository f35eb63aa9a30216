#!/usr/bin/env bash
# The one run command: installs dependencies, builds, writes the agent-VM
# policy for this host (examples/agent-vm/make-policy.sh: its package
# registries and nothing else) and runs superebpfd in the foreground with
# it. Needs root. Arguments are passed to superebpfd (see --help); the
# daemon's API is then at /run/superebpf/superebpfd.sock, for superebpfctl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target superebpfd superebpfctl >/dev/null
mkdir -p /etc/superebpf
if [ ! -f /etc/superebpf/agent-vm-policy.yaml ]; then
  examples/agent-vm/make-policy.sh > /etc/superebpf/agent-vm-policy.yaml.new
  mv /etc/superebpf/agent-vm-policy.yaml.new /etc/superebpf/agent-vm-policy.yaml
fi
exec build/src/daemon/superebpfd --policy-file /etc/superebpf/agent-vm-policy.yaml "$@"
