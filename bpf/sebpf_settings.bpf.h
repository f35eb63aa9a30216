/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The programs' load-time settings (.rodata): the loader sets each before
 * load (src/datapath/datapath.cc), and the verifier then treats them as
 * constants. All in one place, so the loader's side reads as one list.
 */
#ifndef SEBPF_SETTINGS_BPF_H
#define SEBPF_SETTINGS_BPF_H

#include <linux/types.h>

/* How long a flow lives without packets: TCP, and the rest. */
const volatile __u64 sebpf_flow_idle_tcp_ns = 24ULL * 3600 * 1000000000ULL;
const volatile __u64 sebpf_flow_idle_other_ns = 180ULL * 1000000000ULL;
/* Set by the loader when cgroup_skb programs may call bpf_get_netns_cookie
 * (newer kernels; probed at load); otherwise flows of cgroup attachments carry no
 * namespace (see struct sebpf_flow_key). */
const volatile __u8 sebpf_netns_cookies = 0;
/* The port range of the daemon's DNS endpoints (host order; 0, 0: none). */
const volatile __u16 sebpf_dns_port_first = 0;
const volatile __u16 sebpf_dns_port_last = 0;
/* A VM's DHCP requests per family: this many at once, then one per interval. */
const volatile __u64 sebpf_dhcp_burst = 6;
const volatile __u64 sebpf_dhcp_interval_ns = 20ULL * 1000000000ULL;
/* Buckets of sebpf_learned (a power of two); 0: learned hosts are in the
 * host maps only (the daemon's table needs x86-64's memory order). */
const volatile __u32 sebpf_learned_buckets = 0;

#endif /* SEBPF_SETTINGS_BPF_H */
