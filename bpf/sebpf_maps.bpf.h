/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every map of the datapath. One loaded program set serves all attachments;
 * per-attachment state is found by cgroup id or ifindex. The max_entries
 * below are placeholders: the loader sets real sizes from its configuration
 * before load (bpf_map__set_max_entries).
 */
#ifndef SEBPF_MAPS_BPF_H
#define SEBPF_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sebpf_shared.h"

/* Where each attachment's current record is (struct sebpf_att_ref), by
 * cgroup id and by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct sebpf_att_ref);
} sebpf_cg_attach SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sebpf_att_ref);
} sebpf_if_attach SEC(".maps");

/* Attachment records, two per slot (see struct sebpf_att_ref). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, struct sebpf_attachment);
} sebpf_att_records SEC(".maps");

/* Userspace only: the name of each attached interface (struct sebpf_ifname). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sebpf_ifname);
} sebpf_if_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct sebpf_host4_key);
	__type(value, struct sebpf_rule);
} sebpf_host4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct sebpf_host6_key);
	__type(value, struct sebpf_rule);
} sebpf_host6 SEC(".maps");

/* Learned hosts, written by the daemon through mmap (see sebpf_learned_slot
 * and src/datapath/learned_table.h); a bucket per element. Sized at load
 * for twice max_host_rules hosts. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sebpf_learned_bucket);
} sebpf_learned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct sebpf_prefix4_key);
	__type(value, struct sebpf_rule);
} sebpf_prefix4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct sebpf_prefix6_key);
	__type(value, struct sebpf_rule);
} sebpf_prefix6 SEC(".maps");

/*
 * Connection tracking, in tables of each attachment's own: an array of maps
 * holding SEBPF_TRACK_TABLES tables per slot (index slot *
 * SEBPF_TRACK_TABLES + enum sebpf_track_table), which the loader makes
 * when an attachment first takes the slot. Each table is an LRU, so a
 * workload that opens (or receives, or forges in a namespace of its own)
 * more flows than its table holds evicts only its own oldest ones, never
 * another attachment's.
 *
 * One array for all three kinds of table, so that installing a slot's
 * tables is one batch update: each update of an array of maps waits for an
 * RCU grace period (milliseconds). Hence one key type for all.
 *
 * The template's max_entries does not matter (the kernel checks an inner
 * hash map's type, key, value and flags, not its size); the loader sizes
 * each table from max_flows_per_attachment. Sizes, not types: clang leaves
 * a type reached only through an inner map's template as a forward
 * declaration, whose size libbpf cannot tell.
 */
struct sebpf_conntrack_table {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(union sebpf_track_key));
	__uint(value_size, sizeof(struct sebpf_flow_value));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1024 * SEBPF_TRACK_TABLES);
	__type(key, __u32);
	__array(values, struct sebpf_conntrack_table);
} sebpf_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sebpf_counters);
} sebpf_counters SEC(".maps");

/* Each attachment's DHCP budget (sebpf_take_dhcp_budget), by slot * 2 +
 * (0 IPv4, 1 IPv6): the budget's "theoretical arrival time" (GCRA,
 * boottime ns). Zeroed with the slot's counters when an attachment takes
 * it (a time long past: the whole burst). Not in the flow tables: a flood
 * of flows must not be able to evict, hence renew, it. Sized 2 *
 * max_attachments at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, __u64);
} sebpf_dhcp_budget SEC(".maps");

/* Each cgroup attachment's watched network namespace (struct
 * sebpf_netns_watch), by slot; zeroed when an attachment takes the slot.
 * Sized max_attachments at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sebpf_netns_watch);
} sebpf_netns_watch SEC(".maps");

/* Socket calls from outside the watched namespace (struct
 * sebpf_netns_event), read by the daemon. Reports are rate-limited per
 * attachment; the loader sizes this to hold one from every attachment
 * there can be. When it is full, a report is lost and the next (a second
 * on) or the daemon's sweep finds the move. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} sebpf_netns_events SEC(".maps");

/*
 * Not used by any program. Updating a map-of-maps makes the kernel wait for
 * every running BPF program to finish (synchronize_rcu in the update
 * syscall), which is how userspace knows no packet still uses a rule set it
 * has just switched away from, before deleting that rule set.
 */
struct sebpf_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct sebpf_barrier_inner);
} sebpf_barrier SEC(".maps");

/* One entry: ABI version and sizes, checked when a process adopts pins. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sebpf_meta);
} sebpf_meta SEC(".maps");

/*
 * Per socket: where a DNS query steered to the endpoint was really going
 * (`orig`) and where it was sent instead (`to`), so that answers appear to
 * come from the resolver the application asked (recvmsg, getpeername).
 * Addresses as the socket calls see them: IPv4 in word 0, or IPv6 (also
 * v4-mapped) in all four. Socket-local storage: freed with the socket.
 */
struct sebpf_dns_steer {
	__u32 orig_addr[4];
	__u32 to_addr[4];
	__u16 orig_port; /* network order; 0 = never steered */
	__u16 to_port;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sebpf_dns_steer);
} sebpf_dns_steer SEC(".maps");

/*
 * Per raw socket of an attached cgroup, made when the socket is
 * (sebpf_sock_create): enum sebpf_raw_sock flags. A raw socket without an
 * entry predates the attachment, so it may have set IP_HDRINCL before
 * sebpf_setsockopt could refuse it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} sebpf_raw_socks SEC(".maps");

#endif /* SEBPF_MAPS_BPF_H */
