#!/usr/bin/env bash
# DNS endpoint benchmark: dnsperf against, in one run on this machine,
#   upstream   knotd, authoritative for the bench zone (the baseline)
#   superebpf  an attachment's DNS endpoint forwarding to knotd; every answer
#              learned into the kernel's allow rules before it is released
#   dnsmasq    forwarding to knotd, cache off
#   dnsdist    forwarding to knotd, no packet cache
#   relay      bench/udp_relay.cc forwarding to knotd: no DNS work at all,
#              the floor (kernel work per datagram) under any forwarder
# Each target answers the same names (each with an address of its own, so
# every answer through superebpf needs a fresh map write); "superebpf-again"
# repeats names superebpf has just resolved (addresses already held, no
# write). Prints qps, latency percentiles and CPU time per query for each
# target. Everything listens on 127.0.0.1 only. Needs root (the daemon) and
# the Debian packages knot, dnsperf, dnsmasq-base, dnsdist.
#
#   sudo [ROUNDS=n] [RATES="r1 r2 ..."] [SYSCALLS=1] bench/dns_bench.sh [build-dir] [names] [baseline-superebpfd]
#
# With a third argument, that superebpfd binary (an older build, say) runs
# beside the build's as target "baseline", with a daemon and attachment of
# its own, taking turns in the same rounds: on this VM, whose speed drifts
# within seconds, a change shows only against its baseline in one run.
#
# Two parts: latency at a steady, light 1,000 queries/s (what a client
# waits; at one query at a time the CPUs sleep between queries and wake-up
# time swamps the figures), and throughput with dnsperf's default 100
# outstanding (where queues dominate latency). With RATES, a third: each
# forwarder at each of those steady rates (queries/s), for the CPU time it
# spends per query at a load it keeps up with (dnsmasq is left out: on a
# small VM it keeps up with little more than 50,000). With SYSCALLS=1, a
# last part: superebpf, dnsdist and the relay at saturation once more, on
# fresh names, each under `perf stat`, for the system calls and context
# switches each makes per query (where its kernel time goes; needs perf).
set -euo pipefail

build=${1:-build}
names=${2:-100000}
baseline=${3:-}
daemon="$build/src/daemon/superebpfd"
ctl="$build/src/ctl/superebpfctl"
relay="$build/bench/sebpf_udp_relay"
for tool in knotd knotc dnsperf dnsmasq dnsdist "$daemon" "$ctl" "$relay" ${baseline:+"$baseline"}; do
  command -v "$tool" >/dev/null || { echo "dns_bench: missing $tool" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "dns_bench: run as root" >&2; exit 2; }

work=$(mktemp -d /tmp/sebpf-dns-bench-XXXXXX)
cgroot=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rmdir "$cgroot/sebpf-dns-bench-$$"-* 2>/dev/null || true
  rm -rf "/sys/fs/bpf/sebpf-dns-bench-$$"-* "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # through the EXIT trap: nothing is left running

# Below the kernel's ephemeral ports (net.ipv4.ip_local_port_range, from
# 32768): there a connection of anything else (a test run's, in TIME_WAIT)
# may hold a port, and dnsmasq cannot bind it.
p_knot=31301 p_dnsmasq=31302 p_dnsdist=31303 p_relay=31304
lat_names=5000
# Validated before the minutes of set-up.
rounds_throughput=${ROUNDS:-5}
[[ "$rounds_throughput" =~ ^[1-9][0-9]?$ ]] || { echo "dns_bench: ROUNDS must be 1-99" >&2; exit 2; }
rates=${RATES:-}
steady_seconds=2  # per round and target
steady_names=0
for rate in $rates; do
  [[ "$rate" =~ ^[1-9][0-9]{0,6}$ ]] || { echo "dns_bench: RATES must be queries/s, 1-9999999" >&2; exit 2; }
  steady_names=$((steady_names + rate * steady_seconds * rounds_throughput))
done
count_syscalls=${SYSCALLS:-}
[[ "$count_syscalls" =~ ^1?$ ]] || { echo "dns_bench: SYSCALLS must be 1 or unset" >&2; exit 2; }
if [ -n "$count_syscalls" ] && ! command -v perf >/dev/null; then
  echo "dns_bench: SYSCALLS=1 needs perf (Debian: linux-perf)" >&2
  exit 2
fi
syscall_names=$((count_syscalls ? names / rounds_throughput : 0))
all_names=$((names + lat_names + steady_names + syscall_names))

# The zone: r<i>.bench.example AAAA 2001:db8:2::<i>, an address each.
{
  echo '$ORIGIN bench.example.'
  echo '$TTL 300'
  echo '@ SOA ns hostmaster 1 3600 600 86400 60'
  echo '@ NS ns'
  echo 'ns A 127.0.0.1'
  for ((i = 0; i < all_names; i++)); do printf 'r%d AAAA 2001:db8:2::%x:%x\n' "$i" $((i >> 16)) $((i & 0xffff)); done
} > "$work/bench.zone"
for ((i = 0; i < names; i++)); do echo "r$i.bench.example AAAA"; done > "$work/queries.txt"
for ((i = names; i < names + lat_names; i++)); do echo "r$i.bench.example AAAA"; done \
  > "$work/latency.txt"
for ((i = names + lat_names; i < all_names - syscall_names; i++)); do echo "r$i.bench.example AAAA"; done \
  > "$work/steady.txt"
for ((i = all_names - syscall_names; i < all_names; i++)); do echo "r$i.bench.example AAAA"; done \
  > "$work/syscalls.txt"

cat > "$work/knot.conf" <<EOF
server:
  listen: 127.0.0.1@$p_knot
  rundir: $work
  user: root:root
log:
  - target: $work/knot.log
    any: warning
database:
  storage: $work/db
template:
  - id: default
    storage: $work
zone:
  - domain: bench.example.
    file: bench.zone
EOF
knotd -c "$work/knot.conf" -s "$work/knot.sock" & pids+=($!)
pid_knot=$!

dnsmasq --no-daemon --no-resolv --no-hosts --cache-size=0 --server="127.0.0.1#$p_knot" \
  --listen-address=127.0.0.1 --bind-interfaces --port=$p_dnsmasq --user=root \
  --dns-forward-max=1000 2>"$work/dnsmasq.log" & pids+=($!)
pid_dnsmasq=$!

cat > "$work/dnsdist.conf" <<EOF
setLocal("127.0.0.1:$p_dnsdist")
newServer({address="127.0.0.1:$p_knot", checkType="none"})
setSecurityPollSuffix("")
EOF
dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dnsdist.log" 2>&1 & pids+=($!)
pid_dnsdist=$!

"$relay" $p_relay 127.0.0.1 $p_knot 2 2>"$work/relay.log" & pids+=($!)
pid_relay=$!

# A daemon (label, binary, first DNS endpoint port) with its state in
# $work/<label>.*; sets pid_<label>.
start_daemon() {
  # The one attachment may hold half the learned-host table: the other
  # half is the part kept free for a policy replace (docs/architecture.md,
  # "DNS endpoints", Limits).
  cat > "$work/$1.yaml" <<EOF
datapath:
  max_host_rules: $((2 * (all_names + 1024)))
dns:
  max_qps: 0
  max_inflight: 100000
  port_first: $3
  port_last: $(($3 + 99))
EOF
  # Every name is a new host: the attachment's share must hold them all
  # (a baseline built before the setting existed goes without).
  printf '  max_learned_hosts: %d\n' $((all_names + 1024)) >> "$work/$1.yaml"
  "$2" --config "$work/$1.yaml" --check-config >/dev/null 2>&1 ||
    sed -i '/max_learned_hosts/d' "$work/$1.yaml"
  "$2" --config "$work/$1.yaml" --socket "$work/$1.sock" --state-dir "$work/$1.state" \
    --pin-dir "/sys/fs/bpf/sebpf-dns-bench-$$-$1" --dns-upstream "127.0.0.1:$p_knot" \
    --detach-on-exit --log-level warning 2>"$work/$1.log" &
  pids+=($!)
  eval "pid_$1=$!"
}
# A cgroup attachment allowing bench.example; prints its endpoint's port.
attach() {
  mkdir "$cgroot/sebpf-dns-bench-$$-$1"
  "$ctl" --socket "$work/$1.sock" -o json attach --cgroup "$cgroot/sebpf-dns-bench-$$-$1" \
    --mode allowlist --dns-mode allowlist --allow-domain bench.example |
    sed -n 's/.*"port": *\([0-9]*\).*/\1/p' | head -1
}
start_daemon daemon "$daemon" 31400
[ -z "$baseline" ] || start_daemon baseline "$baseline" 31500

# knotd takes a while to load a big zone; the daemon to start.
ready=
for _ in $(seq 1200); do
  if [ -S "$work/daemon.sock" ] && { [ -z "$baseline" ] || [ -S "$work/baseline.sock" ]; } &&
    [ -n "$(dig +short +tries=1 +time=1 @127.0.0.1 -p $p_knot \
    "r$((all_names - 1)).bench.example" AAAA)" ]; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || {
  echo "dns_bench: knotd or superebpfd did not come up" >&2
  cat "$work"/*.log >&2
  exit 1
}
port=$(attach daemon)
[ -n "$port" ] || { echo "dns_bench: attach failed" >&2; cat "$work/daemon.log" >&2; exit 1; }
if [ -n "$baseline" ]; then
  port_baseline=$(attach baseline)
  [ -n "$port_baseline" ] || { echo "dns_bench: baseline attach failed" >&2; exit 1; }
fi

# CPU time (user + system, all threads) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One dnsperf run against a target: prints "qps p50 p90 p99 lost cpu", the
# latencies in us and cpu the target's CPU time per query in us. Every
# query must be answered NOERROR. (dnsperf -v prints "> RCODE name type
# latency" per query.) knotd, the upstream asked directly as a reference,
# may leave a few unanswered at full speed (54 of 12,500 once): its run is
# made again, up to twice; any other target's unanswered query ends the
# benchmark, as it is what is measured.
measure() {
  local label=$1 target_port=$2 file=$3 pid=$4
  shift 4
  local out="$work/$label.out" expected before cpu_us qps lost codes attempt
  expected=$(wc -l <"$work/$file")
  for attempt in 1 2 3; do
    before=$(cpu_ticks "$pid")
    dnsperf -s 127.0.0.1 -p "$target_port" -d "$work/$file" -n 1 -v "$@" >"$out" 2>&1
    cpu_us=$(( ($(cpu_ticks "$pid") - before) * 1000000 / $(getconf CLK_TCK) ))
    qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$out")
    lost=$(sed -n 's/.*Queries lost: *\([0-9]*\).*/\1/p' "$out")
    codes=$(sed -n 's/.*Response codes: *//p' "$out")
    [ "$codes" = "NOERROR $expected (100.00%)" ] && break
    echo "dns_bench: $label answered $codes" >&2
    [ "$label" = knotd ] && [ "$attempt" -lt 3 ] || exit 1
  done
  grep '^> ' "$out" | awk '{print $NF * 1000000}' | sort -n | awk \
    -v qps="$qps" -v lost="$lost" -v cpu="$cpu_us" -v n="$expected" '
      { v[NR] = $1 }
      END {
        printf "%.0f %.0f %.0f %.0f %s %.1f\n", qps, v[int(NR * 0.50) + 1], v[int(NR * 0.90) + 1],
          v[int(NR * 0.99) + 1], lost, cpu / n
      }'
}

# dnsperf against one target by name: port and process.
measure_target() {
  local target=$1 file=$2
  shift 2
  case "$target" in
    knotd) measure knotd $p_knot "$file" "$pid_knot" "$@" ;;
    superebpf | superebpf-again) measure "$target" "$port" "$file" "$pid_daemon" "$@" ;;
    baseline) measure baseline "$port_baseline" "$file" "$pid_baseline" "$@" ;;
    dnsmasq) measure dnsmasq $p_dnsmasq "$file" "$pid_dnsmasq" "$@" ;;
    dnsdist) measure dnsdist $p_dnsdist "$file" "$pid_dnsdist" "$@" ;;
    relay) measure relay $p_relay "$file" "$pid_relay" "$@" ;;
  esac
}

# The targets in round r's order: the list rotated by r, so that no target
# always runs first, or always right after the same neighbour (whose load,
# on shared CPUs and caches, may linger).
in_turn() {
  local r=$1
  shift
  local list=("$@") n=$#
  for ((i = 0; i < n; i++)); do echo "${list[(i + r) % n]}"; done
}

# This VM's timing drifts within seconds, so each part runs in rounds: the
# targets take turns, each on the same slice of fresh names, in an order
# that rotates from round to round, and the medians over the rounds are
# printed. "added" is a target's p50 minus
# knotd's, "of dnsdist" its qps over dnsdist's, both within a round.
# Input lines: target round qps p50 p90 p99 lost cpu.
summarize() {
  awk '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j] + 0 < a[j - 1] + 0; j--) {
        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
      }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function spread(list,   a, n, i, lo, hi) {
      n = split(list, a, " ")
      lo = hi = a[1] + 0
      for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
      return sprintf("%.0f-%.0f", lo, hi)
    }
    { line[NR] = $0
      if ($1 == "knotd") p50_knot[$2] = $4
      if ($1 == "dnsdist") qps_dnsdist[$2] = $3 }
    END {
      for (i = 1; i <= NR; i++) {
        split(line[i], f, " "); t = f[1]; r = f[2]
        if (!(t in seen)) { seen[t] = 1; order[++k] = t }
        QPS[t] = QPS[t] " " f[3]; RATIO[t] = RATIO[t] " " 100 * f[3] / qps_dnsdist[r]
        P50[t] = P50[t] " " f[4]; ADDED[t] = ADDED[t] " " (f[4] - p50_knot[r])
        P90[t] = P90[t] " " f[5]; P99[t] = P99[t] " " f[6]; CPU[t] = CPU[t] " " f[8]
      }
      for (j = 1; j <= k; j++) {
        t = order[j]
        printf "%-16s %7.0f qps (%3.0f%% of dnsdist, %7s by round)  p50 %5.0f us (added %4.0f)  p90 %5.0f us  p99 %5.0f us  cpu %5.1f us/query\n",
          t, median(QPS[t]), median(RATIO[t]), spread(RATIO[t]), median(P50[t]), median(ADDED[t]),
          median(P90[t]), median(P99[t]), median(CPU[t])
      }
    }'
}

rounds=5
split -n "l/$rounds" -d -a 2 "$work/latency.txt" "$work/latency."
echo "Latency: a steady 1,000 queries/s (dnsperf -Q 1000), $rounds rounds of" \
  "$((lat_names / rounds)) fresh names"
for ((r = 0; r < rounds; r++)); do
  for target in $(in_turn "$r" knotd superebpf ${baseline:+baseline} dnsmasq dnsdist relay); do
    measure_target "$target" "latency.$(printf %02d "$r")" -Q 1000 | sed "s/^/$target $r /"
  done
done | summarize

# Five: one per target, so that each comes first once (without a
# baseline; with one, six targets take turns). More (ROUNDS=15, say)
# narrow the medians: in A/A runs (the build against itself) five rounds
# still differ by up to 7 %.
rounds=$rounds_throughput
split -n "l/$rounds" -d -a 2 "$work/queries.txt" "$work/queries."
echo "Throughput: dnsperf defaults (100 queries outstanding), $rounds rounds of" \
  "$((names / rounds)) fresh names; superebpf-again repeats them (no map writes)"
for ((r = 0; r < rounds; r++)); do
  # superebpf-again must follow superebpf (it repeats the names superebpf
  # has just resolved): the two take their turn together.
  for target in $(in_turn "$r" knotd superebpf+again ${baseline:+baseline} dnsmasq dnsdist relay); do
    for t in ${target/+again/ superebpf-again}; do
      measure_target "$t" "queries.$(printf %02d "$r")" | sed "s/^/$t $r /"
    done
  done
done | summarize

# Steady loads: every forwarder keeps up, so qps is the rate asked for and
# what differs is the CPU time each spends per query (and latency).
first=1
for rate in $rates; do
  count=$((rate * steady_seconds * rounds))
  sed -n "${first},$((first + count - 1))p" "$work/steady.txt" > "$work/steady-$rate.txt"
  first=$((first + count))
  split -n "l/$rounds" -d -a 2 "$work/steady-$rate.txt" "$work/steady-$rate."
  echo "Steady load: $rate queries/s (dnsperf -Q $rate), $rounds rounds of" \
    "$((count / rounds)) fresh names"
  for ((r = 0; r < rounds; r++)); do
    for target in $(in_turn "$r" knotd superebpf ${baseline:+baseline} dnsdist relay); do
      measure_target "$target" "steady-$rate.$(printf %02d "$r")" -Q "$rate" | sed "s/^/$target $r /"
    done
  done | summarize
done

# System calls and context switches per query, at saturation. perf stat
# counts a process's system calls from their tracepoints; the context
# switches are its threads' counts in /proc, voluntary (it blocked) and
# involuntary (it was preempted).
switches() {
  cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2}
    END {print v, n}'
}
count_syscalls() {
  local label=$1 target_port=$2 pid=$3 file="$work/syscalls.txt" n v0 n0 v1 n1 stat=$work/$1.perf
  local calls=epoll_wait,recvmmsg,sendmmsg,recvmsg,recvfrom,sendmsg,sendto,futex,bpf
  n=$(wc -l <"$file")
  read -r v0 n0 < <(switches "$pid")
  perf stat -x, -o "$stat" -p "$pid" -e "$(sed 's/\([a-z_]\+\)/syscalls:sys_enter_\1/g' <<<"$calls")" &
  local perf_pid=$!
  sleep 0.5  # perf stat attached
  dnsperf -s 127.0.0.1 -p "$target_port" -d "$file" -n 1 >"$work/$label.out" 2>&1
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  read -r v1 n1 < <(switches "$pid")
  awk -F, -v label="$label" -v n="$n" -v vol=$((v1 - v0)) -v invol=$((n1 - n0)) \
    -v qps="$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$work/$label.out")" '
    $3 ~ /sys_enter_/ && $1 > 0 { sub(/.*sys_enter_/, "", $3); calls = calls sprintf(" %s %.3f", $3, $1 / n) }
    END { printf "%-10s %7.0f qps  context switches %.3f + %.3f  calls%s\n", label, qps, vol / n, invol / n, calls }' "$stat"
}
if [ -n "$count_syscalls" ]; then
  echo "System calls per query at saturation (dnsperf defaults), $syscall_names fresh names each;" \
    "context switches per query: voluntary + involuntary"
  count_syscalls superebpf "$port" "$pid_daemon"
  count_syscalls dnsdist $p_dnsdist "$pid_dnsdist"
  count_syscalls relay $p_relay "$pid_relay"
fi

# Learned hosts: in the learned-host table where there is one (x86-64),
# else in the host map.
maps="/sys/fs/bpf/sebpf-dns-bench-$$-daemon/maps"
learned=$({ bpftool -j map dump pinned "$maps/sebpf_host6"; echo; bpftool -j map dump pinned "$maps/sebpf_learned"; } |
  python3 -c '
import json, sys
host6, table = (json.loads(part) for part in sys.stdin.read().strip().split("\n", 1))
def value(e):
    return e.get("formatted", e)["value"]
print(len(host6) + sum(1 for e in table for slot in value(e)["slot"] if slot["ruleset"]))')
echo "learned hosts in the kernel after the runs: $learned"
