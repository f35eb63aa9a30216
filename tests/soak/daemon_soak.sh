#!/usr/bin/env bash
# A soak of the daemon, by hand (not on CI: it runs for minutes): the API
# (rule changes, whole-policy replaces, attachments the policy file
# decides), cgroups, containers and VMs' guests in network namespaces of
# their own, veths and bridges made and removed under it, DNS (good
# queries, junk, queries past the learning limit) to every endpoint, while
# the daemon is reloaded (with a new policy file), stopped, started and
# killed, its state directory and API socket removed under it, and its
# cgroup links detached or swapped for another program. Best run on the
# sanitized build:
#
#   scripts/test.sh --sanitize            # builds build-asan/
#   sudo tests/soak/daemon_soak.sh build-asan 600
#
# With --unit-capabilities first, the daemon runs with the capability
# bounding set the shipped systemd unit gives it
# (dist/systemd/superebpfd.service), as in production, rather than with
# every capability root has: what it cannot do there shows as errors.
#
# It fails (exit 1, the problems listed) on a sanitizer report, a CLI call
# the daemon answered with an internal error, a daemon that does not start
# or stop, an error line in the daemon's log, anything of the run left
# behind, or a broken promise seen from inside a container or a VM's guest:
# an address its DNS answer held refused, or one no answer held let
# through. Addresses: loopback, and documentation ranges on interfaces and
# namespaces it makes; no traffic leaves the host.
set -uo pipefail

# The command the daemon starts under: setpriv, with --unit-capabilities.
under=()
if [ "${1:-}" = --unit-capabilities ]; then
  shift
  unit=$(dirname "$0")/../../dist/systemd/superebpfd.service
  # "CAP_BPF CAP_NET_ADMIN" -> "bpf,+net_admin", setpriv's syntax.
  caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr '[:upper:]' '[:lower:]' |
    sed 's/cap_//g; s/ \+/,+/g')
  [ -n "$caps" ] || { echo "daemon_soak: no CapabilityBoundingSet in $unit" >&2; exit 2; }
  command -v setpriv > /dev/null || { echo "daemon_soak: needs setpriv" >&2; exit 2; }
  under=(setpriv --bounding-set "-all,+$caps" --)
fi
build=${1:-build-asan}
seconds=${2:-300}
[ "$(id -u)" -eq 0 ] || { echo "daemon_soak: must run as root" >&2; exit 2; }
build=$(cd "$build" && pwd)
for tool in dig dnsmasq python3 ip; do
  command -v "$tool" > /dev/null || { echo "daemon_soak: needs $tool" >&2; exit 2; }
done

work=$(mktemp -d /tmp/sebpf-soak.XXXXXX)
cgroup_root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)/sebpf-soak-$$
pin_dir=/sys/fs/bpf/sebpf-soak-$$
ctl=("$build/src/ctl/superebpfctl" --socket "$work/api.sock")
problems=$work/problems
: > "$problems"
problem() { echo "$(date +%T) $*" >> "$problems"; }

cat > "$work/config.yaml" << YAML
socket:
  path: $work/api.sock
state_dir: $work/state
sweep_interval_seconds: 1
datapath:
  pin_dir: $pin_dir
  max_attachments: 64
  max_host_rules: 4096
  max_prefix_rules: 1024
  max_flows_per_attachment: 256
dns:
  port_first: 20000
  port_last: 20999
  upstreams: ["127.0.0.1:5399"]
  min_ttl_seconds: 1
  max_ttl_seconds: 5
  max_learned_hosts: 64
  upstream_timeout_ms: 300
policy_file: $work/policy.yaml
YAML

# The policy file, for attachments made with metadata and no policy; the
# lifecycle worker writes a new one before each reload, stop or kill.
write_policy_file() {
  local cidrs="" i
  for i in $(seq 1 $((RANDOM % 40))); do
    cidrs+="198.51.100.$((RANDOM % 256))/32, 2001:db8:1::$i/128, "
  done
  cat > "$work/policy.yaml.new" << POLICY
version: 1
policies:
  - name: soak-agent
    match: {role: agent}
    mode: $(shuf -n1 -e allowlist denylist)
    dns_mode: allowlist
    allow_cidrs: [${cidrs}203.0.113.0/28]
    deny_cidrs: [198.51.100.$((RANDOM % 2 * 128))/25]
    allow_domains: [soak.example]
    deny_domains: [n$((RANDOM % 120)).soak.example]
default:
  mode: block_all
POLICY
  mv "$work/policy.yaml.new" "$work/policy.yaml"
}
# A policy for replace-policy, as JSON: up to 300 CIDR rules, some with a
# TTL, and domain rules.
replacement_policy() {
  python3 -c 'import json, random
cidrs = []
for i in random.sample(range(512), random.randrange(300)):
    rule = {"cidr": "198.51.100.%d/32" % i if i < 256 else "2001:db8:%x::/48" % i,
            "action": random.choice(["ACTION_ALLOW", "ACTION_DENY"])}
    if random.random() < 0.3: rule["ttl_seconds"] = str(random.randrange(1, 4))
    cidrs.append(rule)
modes = ["MODE_DISABLED", "MODE_ALLOWLIST", "MODE_DENYLIST", "MODE_BLOCK_ALL"]
domains = [{"domain": "n%d.soak.example" % i, "action": random.choice(["ACTION_ALLOW", "ACTION_DENY"])}
           for i in random.sample(range(1, 121), random.randrange(5))]
print(json.dumps({"mode": random.choice(modes), "dns_mode": random.choice(modes),
                  "cidrs": cidrs, "domains": domains + [{"domain": "soak.example", "action": "ACTION_ALLOW"}]}))'
}
mkdir -p "$work/state" "$cgroup_root"
write_policy_file
: > "$work/connected"  # resolve_then_connect.py's tally
: > "$work/links_tampered"  # tamper_with_cgroup_links's, a line each

# The upstream: 120 names, each with an address in 198.51.100.0/24 and one
# in 2001:db8::/32, a 2 s TTL so that learned hosts come and go.
records=()
for i in $(seq 1 120); do
  records+=("--host-record=n$i.soak.example,198.51.100.$i,2001:db8::$i")
done
# The upstream and the workers are this shell's children, stopped by
# parent (pkill -P) and never waited for without a bound: a run forks more
# processes than pid_max (32768 here), so a pid noted at the start may
# name another process by the end; and dnsmasq, after the junk it is
# sent, has been seen to outlive SIGTERM, which once hung the run's end.
dnsmasq --no-daemon --port=5399 --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
  --no-hosts --local-ttl=2 "${records[@]}" > "$work/dnsmasq.log" 2>&1 &
upstream=$!
sleep 0.5
if ! kill -0 "$upstream" 2> /dev/null; then
  echo "daemon_soak: the upstream (dnsmasq) did not start:" "$(cat "$work/dnsmasq.log")" >&2
  rmdir "$cgroup_root"
  rm -rf "$work"
  exit 2
fi

# The daemon's pid, or nothing once that process is not the daemon any more.
daemon_pid() {
  local pid
  pid=$(cat "$work/daemon.pid" 2> /dev/null)
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = superebpfd ] && echo "$pid"
}
start_daemon() {
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "${under[@]}" \
    "$build/src/daemon/superebpfd" -c "$work/config.yaml" "$@" >> "$work/daemon.log" 2>&1 &
  echo $! > "$work/daemon.pid"
  for _ in $(seq 1 150); do
    "${ctl[@]}" list > /dev/null 2>&1 && return
    sleep 0.1
  done
  problem "the daemon did not answer within 15 s of its start"
}
stop_daemon() {
  local pid
  pid=$(daemon_pid)
  kill -INT "$pid" 2> /dev/null
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2> /dev/null || return
    sleep 0.1
  done
  problem "the daemon ($pid) did not stop within 30 s of SIGINT"
  kill -KILL "$pid" 2> /dev/null
}

cleanup() {
  trap - EXIT INT TERM
  # The workers first, so that none starts the daemon again, then the
  # daemon (whichever worker started it last).
  pkill -P $$ 2> /dev/null
  for _ in $(seq 1 50); do
    pgrep -P $$ > /dev/null || break
    sleep 0.2
  done
  pkill -KILL -P $$ 2> /dev/null
  stop_daemon
  # Once more with --detach-on-exit: every attachment and pin taken away.
  start_daemon --detach-on-exit
  stop_daemon
  for link in $(ip -o link | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep '^ssk'); do
    ip link del "$link" 2> /dev/null
  done
  for ns in $(ip netns list | grep -o '^ssk-[^ ]*'); do ip netns del "$ns"; done
  # A container's process, if the run was interrupted while it lived.
  for kill_file in "$cgroup_root"/*/cgroup.kill; do
    [ -e "$kill_file" ] && echo 1 > "$kill_file"
  done
  sleep 0.2
  find "$cgroup_root" -mindepth 1 -depth -type d -exec rmdir {} \; 2> /dev/null
  rmdir "$cgroup_root" 2> /dev/null
  [ -e "$pin_dir" ] && problem "pins left in $pin_dir after --detach-on-exit" && rm -rf "$pin_dir"
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

json_id() {
  python3 -c 'import json, sys
try: print(json.load(sys.stdin).get("id", ""))
except Exception: pass'
}
# Every endpoint address (of both families) and its port, a line each,
# from the API.
endpoints() {
  "${ctl[@]}" -o json list 2> /dev/null | python3 -c 'import json, sys
try: attachments = json.load(sys.stdin).get("attachments", [])
except Exception: attachments = []
for a in attachments:
    e = a.get("dns", {})
    for family in ("ipv4", "ipv6"):
        if e.get(family) and e.get("port"): print(e[family], e["port"])'
}
# A CLI call; the daemon's internal errors (exit status 1) are problems,
# refusals (bad value, not found, attached already) are what a race gives.
call() {
  local out
  out=$("${ctl[@]}" "$@" 2>&1)
  [ $? -eq 1 ] && problem "superebpfctl $*: $out"
}

start_daemon
# What it runs with, for the summary (setpriv has exec'd it by now).
bounding_set=$(awk '$1 == "CapBnd:" { print $2 }' "/proc/$(daemon_pid)/status" 2> /dev/null)
end=$((SECONDS + seconds))

# Cgroups of the host's namespace: attached, policies changed, then
# detached or removed.
cgroup_worker() {
  local n=0 dir id policy
  while [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    dir=$cgroup_root/c$1-$n
    mkdir -p "$dir"
    case $((RANDOM % 5)) in
      0) policy=(--meta role=agent) ;;  # the policy file decides
      1) policy=(--meta role=other) ;;  # its default
      *) policy=(--mode allowlist --allow-domain soak.example --deny-domain n7.soak.example) ;;
    esac
    id=$("${ctl[@]}" -o json attach --cgroup "$dir" "${policy[@]}" 2> /dev/null | json_id)
    for _ in $(seq 1 $((RANDOM % 10))); do
      [ -n "$id" ] || break
      case $((RANDOM % 10)) in
        9) replacement_policy | call replace-policy "$id" --file - ;;
        0) call allow-cidr "$id" "203.0.113.$((RANDOM % 256))/32" --ttl 1s ;;
        1) call deny-cidr "$id" "198.51.100.$((RANDOM % 2 * 128))/25" ;;
        2) call allow-domain "$id" "n$((RANDOM % 120)).soak.example" ;;
        3) call deny-domain "$id" "n$((RANDOM % 120)).soak.example" ;;
        4) call mode "$id" "$(shuf -n1 -e disabled allowlist denylist block_all)" ;;
        5) call dns-mode "$id" "$(shuf -n1 -e disabled allowlist denylist block_all)" ;;
        6) call remove-domain "$id" soak.example ;;
        7) call allow-cidr "$id" "2001:db8:$((RANDOM % 100))::/48" --ttl 2s ;;
        8) call counters "$id" ;;
      esac
    done
    sleep "0.$((RANDOM % 5))"
    if [ -n "$id" ] && [ $((RANDOM % 2)) -eq 0 ]; then call detach "$id"; fi
    rmdir "$dir" 2> /dev/null || problem "cgroup $dir could not be removed"
  done
}

# Containers: a process in a cgroup and a network namespace of its own,
# asking an ordinary resolver (steered to its endpoint in that namespace).
# A third are attached running; a third are attached empty, as a pod's
# cgroup is, and their first process joins from inside its namespace (the
# daemon follows it there); a third are attached with their process in
# ours, which enters the namespace 3 s later (past the looks the
# population change brings), and the first query there has the daemon
# follow it (the socket hooks report it).
any_resolver() {
  if [ $((RANDOM % 2)) -eq 0 ]; then
    echo "203.0.113.$((RANDOM % 250 + 1))"
  else
    printf '2001:db8:53::%x\n' $((RANDOM % 4096 + 1))
  fi
}
container_worker() {
  local n=0 ns dir holder id type unanswered broken flavour
  while [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    ns=ssk-$1-$n
    dir=$cgroup_root/ct$1-$n
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    mkdir -p "$dir"
    flavour=$((RANDOM % 3))
    if [ $flavour -eq 0 ]; then
      (echo $BASHPID > "$dir/cgroup.procs" && exec ip netns exec "$ns" sleep 60) &
      holder=$!
      sleep 0.2
      id=$("${ctl[@]}" -o json attach --cgroup "$dir" --mode allowlist \
        --allow-domain soak.example 2> /dev/null | json_id)
    elif [ $flavour -eq 1 ]; then
      # shellcheck disable=SC2016 # $$, $1 and $2 are the inner shell's
      sh -c 'echo $$ > "$1/cgroup.procs" && sleep 3 && exec nsenter --net="$2" sleep 60' - \
        "$dir" "/run/netns/$ns" &
      holder=$!
      sleep 0.2
      id=$("${ctl[@]}" -o json attach --cgroup "$dir" --mode allowlist \
        --allow-domain soak.example 2> /dev/null | json_id)
      sleep 3.2
      # Its first query may find no endpoint there yet; the next is
      # answered unless the daemon is down, or the attach failed.
      if [ -n "$id" ]; then
        # shellcheck disable=SC2016 # $1 is the inner shell's
        if (echo $BASHPID > "$dir/cgroup.procs" && exec ip netns exec "$ns" sh -c \
          'dig +tries=1 +time=1 +short "@$1" n1.soak.example A > /dev/null
           sleep 0.2
           dig +tries=1 +time=1 +short "@$1" n1.soak.example A' - "$(any_resolver)") \
          2> /dev/null | grep -q .; then
          echo answered >> "$work/late_entrants"
        else
          echo unanswered >> "$work/late_entrants"
        fi
      fi
    else
      id=$("${ctl[@]}" -o json attach --cgroup "$dir" --mode allowlist \
        --allow-domain soak.example 2> /dev/null | json_id)
      # nsenter, not ip netns exec, whose /sys of its own hides the cgroups.
      # shellcheck disable=SC2016 # $$ and $1 are the inner shell's
      nsenter --net="/run/netns/$ns" sh -c 'echo $$ > "$1/cgroup.procs" && exec sleep 60' - \
        "$dir" &
      holder=$!
      sleep 0.2
      # Its first query: answered in its namespace unless the daemon is
      # down, or the attach failed.
      if [ -n "$id" ]; then
        if (echo $BASHPID > "$dir/cgroup.procs" && exec ip netns exec "$ns" dig +tries=1 \
          +time=1 +short "@$(any_resolver)" n1.soak.example A) 2> /dev/null | grep -q .; then
          echo answered >> "$work/first_queries"
        else
          echo unanswered >> "$work/first_queries"
        fi
      fi
    fi
    for _ in $(seq 1 $((RANDOM % 6))); do
      [ -n "$id" ] || break
      (echo $BASHPID > "$dir/cgroup.procs" && exec ip netns exec "$ns" dig +tries=1 +time=1 \
        "$(shuf -n1 -e +tcp +notcp)" "@$(any_resolver)" \
        "n$((RANDOM % 130)).soak.example") > /dev/null 2>&1
      # What the policy promises, checked from inside: an answered address
      # is let through the instant the answer arrives, and one in no answer
      # never is, whatever the daemon is doing meanwhile.
      if [ $((RANDOM % 2)) -eq 0 ]; then
        type=A unanswered=198.51.100.250
      else
        type=AAAA unanswered=2001:db8::ffff
      fi
      if ! broken=$( (echo $BASHPID > "$dir/cgroup.procs" && exec ip netns exec "$ns" python3 \
        "$(dirname "$0")/resolve_then_connect.py" "$(any_resolver)" \
        "n$((RANDOM % 130)).soak.example" "$type" "$unanswered" "$work/connected") 2>&1); then
        problem "container $id: $broken"
      fi
    done
    kill "$holder" 2> /dev/null
    wait "$holder" 2> /dev/null
    if [ -n "$id" ] && [ $((RANDOM % 2)) -eq 0 ]; then call detach "$id"; fi
    ip netns del "$ns"
    rmdir "$dir" 2> /dev/null || problem "cgroup $dir could not be removed"
  done
}

# A VM: a guest in a network namespace of its own behind a veth, asking
# the endpoint on the host side's address and sending a datagram to each
# answered address and to one no answer held. The host forwards nothing
# (each is dropped after the interface's program judged it); the
# attachment's counters must show each answered address allowed by a rule
# and the other denied, whatever the daemon is doing meanwhile.
packet_verdicts() {
  "${ctl[@]}" -o json counters "$1" 2> /dev/null | python3 -c 'import json, sys
counts = {}
for c in json.load(sys.stdin).get("counters", []):
    if c.get("hook") == "packet": counts[c["reason"]] = int(c.get("count", 0))
print(counts.get("allow_rule", 0) + counts.get("allow_kept_connection", 0),
      counts.get("deny_default", 0))' 2> /dev/null
}
vm_worker() {
  local n=0 ns host guest id before after answered expected allowed denied
  while [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    ns=ssk-vm-$n
    host=sskg$n
    guest=sskg${n}p
    ip netns add "$ns"
    ip link add "$host" type veth peer name "$guest" netns "$ns"
    ip addr add 203.0.113.253/32 dev "$host"
    ip link set "$host" up
    ip route add 203.0.113.254/32 dev "$host"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add 203.0.113.254/32 dev "$guest"
    ip -n "$ns" link set "$guest" up
    ip -n "$ns" route add 203.0.113.253/32 dev "$guest"
    ip -n "$ns" route add default via 203.0.113.253 dev "$guest"
    id=$("${ctl[@]}" -o json attach --interface "$host" --mode allowlist --allow-domain soak.example \
      2> /dev/null | json_id)
    for _ in $(seq 1 $((RANDOM % 6))); do
      [ -n "$id" ] || break
      before=$(packet_verdicts "$id") || continue
      answered=$(ip netns exec "$ns" python3 "$(dirname "$0")/resolve_then_connect.py" --datagrams \
        203.0.113.253 "n$((RANDOM % 130)).soak.example" A 198.51.100.250 "$work/connected")
      read -r allowed denied <<< "$before"
      expected="$((allowed + answered)) $((denied + 1))"
      # A verdict counted by a softirq that ksoftirqd runs may land a moment late.
      for _ in 1 2 3; do
        after=$(packet_verdicts "$id") || break
        [ "$after" = "$expected" ] && break
        sleep 0.5
      done
      [ -z "$after" ] || [ "$after" = "$expected" ] ||
        problem "VM $id: $answered answered, packets (allowed denied) went from $before to $after"
    done
    if [ -n "$id" ] && [ $((RANDOM % 2)) -eq 0 ]; then call detach "$id"; fi
    ip link del "$host"
    ip netns del "$ns"
  done
}

# VMs' interfaces: veths with an address, some ports of a bridge; bridges
# released, deleted or flushed under them; deleted or detached.
interface_worker() {
  local n=0 veth bridge id
  while [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    veth=sskv$n
    bridge=sskb$n
    ip link add "$veth" type veth peer name "${veth}p" || continue
    ip link set "$veth" up
    case $((RANDOM % 3)) in
      0) ip addr add "203.0.113.$((n % 250 + 1))/32" dev "$veth" ;;
      1) ip addr add "2001:db8:5::$((n % 4096 + 1))/128" dev "$veth" nodad ;;
      2)
        ip link add "$bridge" type bridge
        # Not an address the upstream answers with: the daemon never learns
        # an address of this host from an answer (only a CIDR rule opens it).
        ip addr add "198.51.100.$((n % 100 + 150))/32" dev "$bridge"
        [ $((RANDOM % 2)) -eq 0 ] && ip addr add "2001:db8:6::$((n % 4096 + 1))/128" dev "$bridge" nodad
        ip link set "$bridge" up
        ip link set "$veth" master "$bridge"
        ;;
    esac
    id=$("${ctl[@]}" -o json attach --interface "$veth" \
      --mode "$(shuf -n1 -e allowlist denylist block_all)" --allow-domain soak.example \
      2> /dev/null | json_id)
    sleep "0.$((RANDOM % 5))"
    case $((RANDOM % 8)) in
      0) ip link set "$veth" nomaster 2> /dev/null ;;
      1) ip link del "$bridge" 2> /dev/null ;;
      2) ip addr flush dev "$veth" ;;
      3) ip link set "$veth" down && ip link set "$veth" up ;;  # a guest's reboot
      4) # renamed (down for the rename, as older kernels insist)
        ip link set "$veth" down
        ip link set "$veth" name "sskr$n" && veth=sskr$n
        ip link set "$veth" up
        ;;
      5) # enslaved after the attach (a VM's tap added to a network later)
        if ip link add "$bridge" type bridge 2> /dev/null; then
          ip addr add "198.51.100.$((n % 100 + 150))/32" dev "$bridge"
          ip link set "$bridge" up
        fi
        ip link set "$veth" master "$bridge"
        ;;
      6) # out of the host's namespace: detached, with a warning (no error)
        ip netns add "ssk-if-$n"
        ip link set "$veth" netns "ssk-if-$n"
        ;;
      7) ;;
    esac
    sleep "0.$((RANDOM % 5))"
    if [ -n "$id" ] && [ $((RANDOM % 3)) -eq 0 ]; then call detach "$id"; fi
    ip link del "$veth" 2> /dev/null || ip netns del "ssk-if-$n"
    ip link del "$bridge" 2> /dev/null
  done
}

# Every endpoint asked: names allowed, denied and unknown, every type, over
# UDP and TCP, then junk (random bytes, counts that lie, a compression loop,
# EDNS options, a TCP length past the message) and bursts of names new to
# it (past dns.max_learned_hosts).
dns_worker() {
  while [ $SECONDS -lt $end ]; do
    endpoints | shuf -n 10 | while read -r address port; do
      for name in "n$((RANDOM % 130)).soak.example" n7.soak.example x.n7.soak.example other.example; do
        dig +tries=1 +time=1 "$(shuf -n1 -e +tcp +notcp)" -p "$port" "@$address" "$name" \
          "$(shuf -n1 -e A AAAA TXT MX ANY)" > /dev/null 2>&1
      done
      python3 "$(dirname "$0")/dns_junk.py" "$address" "$port" 2> /dev/null
    done
    sleep 0.1
  done
}

# Another program removes the daemon's state directory and API socket
# (a cleanup that took them for litter): both must be back at once.
remove_daemon_files() {
  rm -rf "$work/state" "$work/api.sock" 2> /dev/null
  local i
  for i in $(seq 30); do
    [ -f "$work/state/state.pb" ] && [ -S "$work/api.sock" ] && return
    sleep 0.1
  done
  problem "state file or API socket not back 3 s after their removal"
}

# The id of the program the link pinned at `link` runs; empty if none.
linked_program() {
  bpftool -j link show pinned "$1" 2> /dev/null | grep -o '"prog_id":[0-9]*' | cut -d: -f2
}

# Whether every link pinned in `dir` is on a cgroup again, running the
# program it ran before (`programs`: link=id lines), or the directory
# went with its cgroup, within 3 s.
links_held_again() {
  local dir=$1 programs=$2 i link held out
  for i in $(seq 30); do
    sleep 0.1
    [ -d "$dir" ] || return 0
    held=true
    for link in "$dir"/*; do
      out=$(bpftool -j link show pinned "$link" 2> /dev/null) || held=false
      [[ $out == *'"cgroup_id":0,'* ]] && held=false
      grep -qx "$link=$(linked_program "$link")" <<< "$programs" || held=false
    done
    $held && return 0
  done
  return 1
}

# Another program detaches a cgroup's links (bpftool link detach), which
# leaves their pins and tells no one, or puts a pass-all program of its
# own in them (BPF_LINK_UPDATE, swap_link_program.py), which leaves them
# on the cgroup: the next sweep (every second here) must put ours back.
# Until then the workload goes unfiltered (the window the daemon
# documents), which the workers would report: the cgroup is frozen
# meanwhile. A cgroup removed meanwhile takes its links' directory with
# it.
tamper_with_cgroup_links() {
  local dir cgroup link i programs=""
  dir=$(find "$pin_dir/links" -mindepth 1 -maxdepth 1 -name 'cgroup-*' 2> /dev/null | shuf -n 1)
  [ -n "$dir" ] || return 0
  # A cgroup's id is its directory's inode number.
  cgroup=$(find "$cgroup_root" -type d -inum "${dir##*/cgroup-}" 2> /dev/null | head -n 1)
  [ -n "$cgroup" ] || return 0
  # (Braces: a redirection that fails, the cgroup gone, says so on the
  # shell's own stderr.)
  { echo 1 > "$cgroup/cgroup.freeze"; } 2> /dev/null || return 0
  for i in $(seq 50); do
    grep -q '^frozen 1' "$cgroup/cgroup.events" 2> /dev/null && break
    sleep 0.1
  done
  for link in "$dir"/*; do programs+="$link=$(linked_program "$link")"$'\n'; done
  if ((RANDOM % 2)); then
    for link in "$dir"/*; do bpftool link detach pinned "$link" 2> /dev/null; done
    echo "detached $dir" >> "$work/links_tampered"
  else
    python3 "$(dirname "$0")/swap_link_program.py" "$dir"/* > /dev/null 2>&1
    echo "swapped $dir" >> "$work/links_tampered"
  fi
  links_held_again "$dir" "$programs" ||
    problem "the links of $dir detached or swapped, and not put back 3 s later"
  { echo 0 > "$cgroup/cgroup.freeze"; } 2> /dev/null
}

# Reloads (SIGHUP), clean stops and starts, SIGKILLs, and the daemon's
# files removed or its links detached or swapped under it.
lifecycle_worker() {
  local pid
  while [ $SECONDS -lt $((end - 30)) ]; do
    sleep $((15 + RANDOM % 15))
    pid=$(daemon_pid)
    write_policy_file
    case $((RANDOM % 5)) in
      0) kill -HUP "$pid" ;;
      1)
        stop_daemon
        wait "$pid" 2> /dev/null
        start_daemon
        ;;
      2)
        kill -KILL "$pid"
        wait "$pid" 2> /dev/null
        start_daemon
        ;;
      3) remove_daemon_files ;;
      4) tamper_with_cgroup_links ;;
    esac
  done
}

# Each worker leaves a mark when it is done; the run waits for all seven,
# or two minutes past the end (a worker stuck is a problem).
worker() { "$@"; touch "$work/done.$BASHPID"; }
worker cgroup_worker 1 &
worker cgroup_worker 2 &
worker container_worker 1 &
worker interface_worker &
worker vm_worker &
worker dns_worker &
worker lifecycle_worker &
until [ "$(find "$work" -maxdepth 1 -name 'done.*' | wc -l)" -ge 7 ]; do
  if [ $SECONDS -ge $((end + 120)) ]; then
    problem "a worker was still running 2 min after the end"
    break
  fi
  sleep 1
done

# What is left answers: every attachment listed can be read.
for id in $("${ctl[@]}" -o json list | python3 -c 'import json, sys
[print(a["id"]) for a in json.load(sys.stdin).get("attachments", [])]'); do
  for what in get policy counters; do call "$what" "$id"; done
done
stop_daemon
kill -KILL "$upstream"
cleanup
trap - EXIT

grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work/daemon.log" |
  sed 's/^/sanitizer: /' >> "$problems"
# Error lines, but for what the removals, detaches and swaps above are
# logged as (a cgroup's links are put back in one go: a line for each
# detach or swap, no more).
grep '"level":"error"' "$work/daemon.log" |
  grep -v -E '"event":"(state_file_restored|api_socket_restored|attachment_links_restored)"' |
  sed 's/^/error line: /' >> "$problems"
links_replaced=$(grep -c '"event":"attachment_links_restored"' "$work/daemon.log")
links_tampered=$(wc -l < "$work/links_tampered")
[ "$links_replaced" -le "$links_tampered" ] ||
  problem "$links_replaced cgroups' links put back, but only $links_tampered detached or swapped by this run"
# Containers attached empty: their first queries are answered, but for
# those that met a restart (a few).
first_answered=$(grep -c '^answered' "$work/first_queries" 2> /dev/null)
first_asked=$(wc -l < "$work/first_queries" 2> /dev/null || echo 0)
[ "${first_asked:-0}" -lt 10 ] || [ "$((first_answered * 2))" -ge "$first_asked" ] ||
  problem "only $first_answered of $first_asked containers attached empty had their first query answered"
# Containers whose process entered its namespace late: the same.
late_answered=$(grep -c '^answered' "$work/late_entrants" 2> /dev/null)
late_asked=$(wc -l < "$work/late_entrants" 2> /dev/null || echo 0)
[ "${late_asked:-0}" -lt 10 ] || [ "$((late_answered * 2))" -ge "$late_asked" ] ||
  problem "only $late_answered of $late_asked containers whose process entered its namespace late were answered by their second query"
left=$(ip -o link | grep -c ' ssk')
[ "$left" -eq 0 ] || problem "$left interfaces left"
[ -e "$cgroup_root" ] && problem "$cgroup_root left"
ip netns list | grep -q '^ssk-' && problem "network namespaces left"

echo "daemon_soak: $seconds s, capability bounding set ${bounding_set:-unknown}," \
  "$(grep -c '"event":"attached"' "$work/daemon.log") attaches," \
  "$(grep -c '"event":"target_removed"' "$work/daemon.log") targets removed under the daemon," \
  "$(grep -c '"event":"api_socket_restored"' "$work/daemon.log") removals of its files undone," \
  "$(grep -c '"event":"workload_netns_followed"' "$work/daemon.log") workloads followed into a namespace" \
  "(first query answered for ${first_answered:-0} of ${first_asked:-0} containers attached empty;" \
  "second query for ${late_answered:-0} of ${late_asked:-0} whose process entered its namespace late)," \
  "$links_replaced cgroups' links put back" \
  "($(grep -c '^detached' "$work/links_tampered") detached," \
  "$(grep -c '^swapped' "$work/links_tampered") swapped)," \
  "$(awk '{ n += $1 } END { print n + 0 }' "$work/connected") answered addresses" \
  "connected or sent to from containers and VMs"
if [ -s "$problems" ]; then
  echo "daemon_soak: FAILED (the daemon's log and state are kept in $work)" >&2
  cat "$problems" >&2
  exit 1
fi
rm -rf "$work"
echo "daemon_soak: passed"
