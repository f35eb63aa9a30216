#!/usr/bin/env bash
# The one test command: installs dependencies, builds in build/ (or
# build-asan/ with --sanitize), runs every test with ctest. As root the
# privileged BPF and end-to-end tests run; as anyone else they skip and say why.
#
#   scripts/test.sh              # all tests
#   scripts/test.sh --sanitize   # the same under ASan + UBSan
#   scripts/test.sh --threads    # the unit tests under ThreadSanitizer (the
#                                # DNS proxy's loops share counts and a
#                                # backend; the end-to-end tests fork, which
#                                # TSan does not support in threaded programs)
#   scripts/test.sh --fuzz SECS  # the libFuzzer targets, SECS seconds each
set -euo pipefail
cd "$(dirname "$0")/.."

mode=normal
fuzz_seconds=0
case "${1:-}" in
  --sanitize) mode=sanitize ;;
  --threads) mode=threads ;;
  --fuzz) mode=fuzz; fuzz_seconds="${2:-60}" ;;
  "") ;;
  *) echo "usage: $0 [--sanitize | --threads | --fuzz SECONDS]" >&2; exit 2 ;;
esac

scripts/install-deps.sh
jobs=$(nproc)

case "$mode" in
  normal)
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$jobs"
    ctest --test-dir build --output-on-failure
    ;;
  sanitize)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSEBPF_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure
    ;;
  threads)
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEBPF_TSAN=ON >/dev/null
    cmake --build build-tsan -j "$jobs" --target sebpf_unit_tests
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/sebpf_unit_tests
    ;;
  fuzz)
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -DSEBPF_FUZZ=ON >/dev/null
    cmake --build build-fuzz -j "$jobs"
    for target in build-fuzz/tests/fuzz/*_fuzz; do
      name=$(basename "$target" _fuzz)
      corpus=$(mktemp -d)
      cp -r "tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
      echo "fuzz: $name for ${fuzz_seconds}s"
      "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus"
      rm -rf "$corpus"
    done
    ;;
esac
