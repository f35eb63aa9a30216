/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A VM asks its DNS endpoint on port 53. A guest's stub resolver (glibc,
 * musl) can be told an address but no port, and the endpoint's port is
 * one of the range (the guests of a bridge share its address, a port
 * each). So sebpf_tc_guard turns a guest's UDP or TCP to port 53 of its
 * endpoint's address into the endpoint's own port, recording the exchange
 * in one of the attachment's own tables (SEBPF_FLOW_KIND_DNS53), and
 * sebpf_tc_track gives the answers on it port 53 back. A guest that
 * uses the endpoint's port directly is left as it is. Only in a mode that
 * enforces: with the attachment disabled, port 53 there is whatever
 * listens on it.
 */
#ifndef SEBPF_DNS53_BPF_H
#define SEBPF_DNS53_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_policy.bpf.h"
#include "sebpf_shared.h"

/* The exchange as the guest began it: to port 53 of the endpoint's
 * address, from its port `guest_port`. */
static __always_inline void sebpf_dns53_key_of(union sebpf_track_key *u,
					       const struct sebpf_attachment *att,
					       const struct sebpf_pkt *p, const __u8 endpoint[16],
					       __u16 guest_port)
{
	struct sebpf_flow_key *k = &u->flow;

	__builtin_memset(u, 0, sizeof(*u));
	k->netns = p->netns;
	k->serial = att->serial;
	k->family = p->family;
	k->protocol = p->protocol;
	k->local_port = guest_port;
	k->remote_port = bpf_htons(SEBPF_DNS_PORT);
	k->kind = SEBPF_FLOW_KIND_DNS53;
	__builtin_memcpy(k->remote_addr, endpoint, sizeof(k->remote_addr));
}

/* Rewrites the port at `port_off` (from -> to, network order) and the
 * checksum that covers it. A UDP checksum of 0 (none, IPv4) stays 0. */
static __always_inline int sebpf_rewrite_port(struct __sk_buff *skb, const struct sebpf_pkt *p,
					      __u32 port_off, __u16 from, __u16 to)
{
	__u32 csum_off = p->l4_off + (p->protocol == IPPROTO_TCP ? 16 : 6);
	__u64 flags = sizeof(__u16) | (p->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0);

	if (bpf_l4_csum_replace(skb, csum_off, from, to, flags) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &to, sizeof(to), 0);
}

/* sebpf_tc_guard: the guest's query to port 53 of its endpoint's address
 * goes to the endpoint's port (p follows). Not rewritten (the record could
 * not be written), it is refused as DNS to another resolver. */
static __always_inline void sebpf_dns53_to_endpoint(struct __sk_buff *skb,
						    const struct sebpf_attachment *att,
						    struct sebpf_pkt *p)
{
	union sebpf_track_key key;
	struct sebpf_flow_value seen;
	void *exchanges;

	if (att->mode == SEBPF_MODE_DISABLED || !att->dns_port || !sebpf_is_dns_query(p) ||
	    !sebpf_is_endpoint_address(att, p, p->daddr))
		return;
	exchanges = sebpf_table_of(att, SEBPF_TRACK_REPLY_FRAGS);
	if (!exchanges)
		return;
	sebpf_dns53_key_of(&key, att, p, p->daddr, p->sport);
	seen.last_seen = sebpf_flow_clock();
	if (bpf_map_update_elem(exchanges, &key, &seen, BPF_ANY) != 0)
		return;
	if (sebpf_rewrite_port(skb, p, p->l4_off + 2, p->dport, att->dns_port) != 0)
		return;
	p->dport = att->dns_port;
}

/* sebpf_tc_track: the endpoint's answer to such a query comes from port 53,
 * as the guest asked. */
static __always_inline void sebpf_dns53_from_endpoint(struct __sk_buff *skb,
						      const struct sebpf_attachment *att,
						      const struct sebpf_pkt *p)
{
	union sebpf_track_key key;
	void *exchanges;

	if (!sebpf_is_endpoint_end(att, p, p->saddr, p->sport))
		return;
	exchanges = sebpf_table_of(att, SEBPF_TRACK_REPLY_FRAGS);
	if (!exchanges)
		return;
	sebpf_dns53_key_of(&key, att, p, p->saddr, p->dport);
	/* Idle as long as a UDP flow, the exchange is over: the guest's port
	 * may since be asking the endpoint's port itself. */
	if (!sebpf_flow_fresh(bpf_map_lookup_elem(exchanges, &key), sebpf_flow_clock(),
			      sebpf_flow_idle_other_ns))
		return;
	sebpf_rewrite_port(skb, p, p->l4_off, p->sport, bpf_htons(SEBPF_DNS_PORT));
}

#endif /* SEBPF_DNS53_BPF_H */
