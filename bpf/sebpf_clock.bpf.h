/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The clocks a decision reads, each at most once: the boot-time one for
 * rules' expiries, the coarse monotonic one for the flow tables.
 */
#ifndef SEBPF_CLOCK_BPF_H
#define SEBPF_CLOCK_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The boot-time clock, read at most once per decision and only when a rule
 * with an expiry is looked at: most rules never expire, and reading the
 * clock costs more than a hash lookup on some virtual machines. */
struct sebpf_clock {
	__u64 now;
	__u64 flow_now;
};

static __always_inline __u64 sebpf_now(struct sebpf_clock *c)
{
	if (!c->now)
		c->now = bpf_ktime_get_boot_ns();
	return c->now;
}

/* The connection-tracking tables' clock: the coarse monotonic one, a tick
 * apart at worst, which their timeouts (a second and up) never notice. It
 * costs a few ns where the boot-time clock costs ~20, and every allowed
 * UDP datagram reads it. Their contents are the kernel's alone (userspace
 * only copies an entry whole), so nothing else need agree with it. */
static __always_inline __u64 sebpf_flow_clock(void) { return bpf_ktime_get_coarse_ns(); }

static __always_inline __u64 sebpf_flow_now(struct sebpf_clock *c)
{
	if (!c->flow_now)
		c->flow_now = sebpf_flow_clock();
	return c->flow_now;
}

#endif /* SEBPF_CLOCK_BPF_H */
