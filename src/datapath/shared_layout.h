// The kernel/user shared definitions, seen from C++, with the layout pinned
// down: if bpf/sebpf_shared.h changes size or field offsets, this fails to
// compile instead of silently misreading the maps.
#pragma once

#include <cstddef>

#include "sebpf_shared.h"

static_assert(sizeof(sebpf_attachment) == 48);
static_assert(offsetof(sebpf_attachment, owner) == 40);
static_assert(sizeof(sebpf_att_ref) == 8);
static_assert(offsetof(sebpf_attachment, ruleset) == 8);
static_assert(offsetof(sebpf_attachment, mode) == 12);
static_assert(offsetof(sebpf_attachment, dns_port) == 14);
static_assert(offsetof(sebpf_attachment, dns_addr4) == 16);
static_assert(offsetof(sebpf_attachment, dns_addr6) == 20);
static_assert(sizeof(sebpf_host4_key) == 8);
static_assert(sizeof(sebpf_host6_key) == 20);
static_assert(sizeof(sebpf_prefix4_key) == 12);
static_assert(sizeof(sebpf_prefix6_key) == 24);
static_assert(offsetof(sebpf_prefix4_key, ruleset) == 4);
static_assert(sizeof(sebpf_rule) == 24);
static_assert(sizeof(sebpf_flow_key) == 40);
static_assert(offsetof(sebpf_flow_key, remote_addr) == 20);
static_assert(sizeof(sebpf_flow_value) == 8);
static_assert(sizeof(sebpf_frag_key) == 56);
static_assert(sizeof(sebpf_track_key) == sizeof(sebpf_frag_key));
// A port 53 exchange's flow key shares a table with fragment keys: its
// remote port (53, high byte 0) sits where they hold a family, never 0.
static_assert(offsetof(sebpf_flow_key, remote_port) == offsetof(sebpf_frag_key, family));
static_assert(sizeof(sebpf_counters) == 8 * SEBPF_HOOK_COUNT * SEBPF_REASON_COUNT);
static_assert(sizeof(sebpf_counters) % 8 == 0, "per-CPU values are 8-byte rounded");
static_assert(sizeof(sebpf_meta) == 32);
static_assert(sizeof(sebpf_ifname) == 16);
static_assert(sizeof(sebpf_netns_watch) == 16);
static_assert(sizeof(sebpf_netns_event) == 16);
static_assert(sizeof(sebpf_learned_slot) == 40);
static_assert(offsetof(sebpf_learned_slot, until) == 16);
static_assert(offsetof(sebpf_learned_slot, addr) == 24);
static_assert(sizeof(sebpf_learned_bucket) == 40 * SEBPF_LEARNED_WAYS);
