#!/usr/bin/env bash
# Writes the agent-VM policy to stdout: every attachment may resolve and
# reach exactly the package registries this host's own package tools are
# configured to use (apt's sources, pip's index, npm's registry), and
# nothing else. Reading them from the host, instead of shipping a fixed
# list, keeps a site that uses its own mirrors right without editing, with
# one exception: DNS answers never open private addresses (superebpfd's
# dns.never_learn), so mirrors on a private network also need their
# addresses under allow_cidrs in the written policy. A registry given by
# address instead of name is written there itself.
#
#   examples/agent-vm/make-policy.sh > /etc/superebpf/policy.yaml
#
# What it found, and what it could not read, goes to stderr.
set -euo pipefail

declare -A seen=()
names=()
cidrs=()

# A dotted quad of four numbers 0-255.
is_ipv4() {
  local IFS=. octet
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for octet in $1; do ((10#$octet <= 255)) || return 1; done
}

add_url() {  # add_url SOURCE URL
  local host
  host=$(printf '%s\n' "$2" | sed -nE 's#^[a-zA-Z][a-zA-Z0-9+.-]*://([^/@]*@)?(\[[^]]*\]|[^/:]+).*#\2#p' |
    tr '[:upper:]' '[:lower:]')
  host=${host%.}
  case "$2" in
    mirror+file:*)  # apt-transport-mirror, its list on this host: the mirrors in it
      follow_mirror_list "$1" "${2#mirror+file:}"
      return 0 ;;
    mirror*)  # a list apt fetches from that host, which this script cannot read
      echo "make-policy: $1: $2 is a mirror list on another host; its host is allowed, the mirrors it names must be added by hand" >&2 ;;
  esac
  if [ -z "$host" ]; then
    case "$2" in
      file:* | cdrom:* | copy:* | "") ;;  # on this host, no network
      *) echo "make-policy: $1: $2 names no host; skipped" >&2 ;;
    esac
    return 0
  fi
  [ -z "${seen[$host]:-}" ] || return 0
  seen[$host]=1
  # An address is no name to resolve: the policy's domain rules would
  # refuse it (superebpfd rejects the file), so it becomes a CIDR rule.
  if [[ $host =~ ^\[[0-9a-f:.]+\]$ ]]; then
    host=${host#[}
    cidrs+=("${host%]}/128")
  elif is_ipv4 "$host"; then
    cidrs+=("$host/32")
  elif [[ $host == localhost || $host == *[!a-z0-9.-]* || $host =~ ^[0-9.]+$ ]]; then
    echo "make-policy: $1: $host is neither a name nor an address this policy can hold; skipped" >&2
    return 0
  else
    names+=("$host")
  fi
  echo "make-policy: $1: $host" >&2
}

# An apt mirror list on this host (apt-transport-mirror): a URI a line,
# maybe followed by tab-separated metadata; empty lines and those
# starting with # are not read. Each list is read once, so a list that
# names itself ends.
declare -A lists_read=()
follow_mirror_list() {  # follow_mirror_list SOURCE FILE
  local file=$2 uri
  [[ $file == ///* ]] && file=${file#//}  # mirror+file:///path
  [ -z "${lists_read[$file]:-}" ] || return 0
  lists_read[$file]=1
  if [ ! -r "$file" ]; then
    echo "make-policy: $1: mirror list $file cannot be read; none of its mirrors is allowed" >&2
    return 0
  fi
  while read -r uri _; do
    case "$uri" in "" | "#"*) continue ;; esac
    add_url "$1 (mirror list $file)" "$uri"
  done < "$file"
}

# apt: the files apt itself reads (apt-config follows APT_CONFIG and
# Dir::Etc), one-line sources ("deb [options] URL suite ...") and deb822
# stanzas ("URIs: URL ...", folded lines too; not those with
# "Enabled: no").
sourcelist=/etc/apt/sources.list
sourceparts=/etc/apt/sources.list.d
if command -v apt-config >/dev/null; then
  eval "$(apt-config shell sourcelist Dir::Etc::sourcelist/f sourceparts Dir::Etc::sourceparts/d)"
fi
sourceparts=${sourceparts%/}
shopt -s nullglob
for f in "$sourcelist" "$sourceparts"/*.list; do
  [ -r "$f" ] || continue
  while read -r url; do add_url apt "$url"; done < <(
    sed -nE 's/^[[:space:]]*deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\3/p' "$f")
done
for f in "$sourceparts"/*.sources; do
  [ -r "$f" ] || continue
  while read -r url; do add_url apt "$url"; done < <(awk '
    function flush(  n, i, u) {
      n = split(uris, u)
      for (i = 1; i <= n && enabled; i++) print u[i]
      uris = ""; enabled = 1; key = ""
    }
    BEGIN { enabled = 1 }
    /^[[:space:]]*$/ { flush(); next }
    /^#/ { next }
    /^[[:space:]]/ { if (key == "uris") uris = uris " " $0; next }
    {
      key = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
      if (key == "uris") uris = uris " " value
      if (key == "enabled") { gsub(/[[:space:]]/, "", value); if (tolower(value) == "no") enabled = 0 }
    }
    END { flush() }' "$f")
done

# pip: the configured index, else pip's own default and where it serves
# files from.
pip_index=${PIP_INDEX_URL:-}
if [ -z "$pip_index" ] && command -v python3 >/dev/null; then
  pip_index=$(python3 -m pip config get global.index-url 2>/dev/null || true)
fi
if [ -n "$pip_index" ]; then
  add_url pip "$pip_index"
elif defaults=$(python3 -c 'from pip._internal.models.index import PyPI
print(PyPI.url); print("https://" + PyPI.file_storage_domain + "/")' 2>/dev/null); then
  while read -r url; do add_url pip "$url"; done <<<"$defaults"
else
  echo "make-policy: pip: not installed, so no index is allowed (set PIP_INDEX_URL to add one)" >&2
fi

# npm: its configured registry (npm's default when nothing is set).
if command -v npm >/dev/null; then
  add_url npm "$(npm config get registry 2>/dev/null || true)"
else
  echo "make-policy: npm: not installed, so no registry is allowed" >&2
fi

if [ ${#names[@]} -eq 0 ] && [ ${#cidrs[@]} -eq 0 ]; then
  echo "make-policy: found no registry at all; the policy allows nothing" >&2
fi

list() {  # list ITEM...: the items as a YAML flow sequence
  local IFS=,
  printf '[%s]' "$*"
}

cat <<YAML
# The agent-VM policy: package registries only. Generated by
# examples/agent-vm/make-policy.sh from this host's apt, pip and npm
# configuration. A name covers its subdomains too.
version: 1
policies:
  - name: agent-vm
    mode: allowlist
    dns_mode: allowlist
    allow_cidrs: $(list "${cidrs[@]}")
    allow_domains:
YAML
for n in "${names[@]}"; do printf '      - %s\n' "$n"; done
[ ${#names[@]} -gt 0 ] || printf '      []\n'
