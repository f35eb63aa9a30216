#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the benchmarks
# need. Safe to run again; does nothing when all are present.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git
  clang llvm libclang-rt-14-dev
  libbpf-dev bpftool linux-libc-dev libelf-dev zlib1g-dev
  libyaml-cpp-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libcli11-dev nlohmann-json3-dev libabsl-dev
  libsystemd-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # tests: namespaces, traffic, tools they drive
  iproute2 iputils-ping procps util-linux
  # a VM's DHCP through the TC guard: a real client and server
  udhcpc dnsmasq-base
  # a container rerouting past its cgroup programs (NAT in its namespace)
  nftables
  # DNS tests: a real authoritative upstream with a query log, and dig
  knot knot-module-dnstap bind9-dnsutils
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
