/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Flow tracking, per attachment: flows the outside opened (so the
 * workload may reply), flows the workload opened (so a learned address's
 * connection outlives its TTL, and a UDP answer opens nothing), and the
 * later fragments of a reply. Not a connection tracker: see "Known
 * limits" in docs/architecture.md.
 */
#ifndef SEBPF_FLOWS_BPF_H
#define SEBPF_FLOWS_BPF_H

#include "sebpf_addresses.bpf.h"
#include "sebpf_clock.bpf.h"
#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_settings.bpf.h"

/* Reply flows are refreshed at most this often, to keep map writes off the
 * per-packet path of a busy flow. */
#define SEBPF_FLOW_REFRESH_NS 1000000000ULL

/* One of the attachment's own connection-tracking tables, or NULL if it
 * has none (which the loader never lets happen to an attachment in use):
 * then no flow is recorded and none found, which fails closed. */
static __always_inline void *sebpf_table_of(const struct sebpf_attachment *att,
					    enum sebpf_track_table table)
{
	__u32 index = att->slot * SEBPF_TRACK_TABLES + table;

	return bpf_map_lookup_elem(&sebpf_conntrack, &index);
}

/* Key of the flow a packet belongs to, seen from the workload's side. */
static __always_inline void sebpf_flow_key_outbound(union sebpf_track_key *u, __u32 serial,
						    const struct sebpf_pkt *p)
{
	struct sebpf_flow_key *k = &u->flow;

	__builtin_memset(u, 0, sizeof(*u));
	k->netns = p->netns;
	k->serial = serial;
	k->family = p->family;
	k->protocol = p->protocol;
	k->local_port = p->sport;
	k->remote_port = p->dport;
	__builtin_memcpy(k->remote_addr, p->daddr, 16);
}

static __always_inline void sebpf_flow_key_inbound(union sebpf_track_key *u, __u32 serial,
						   const struct sebpf_pkt *p)
{
	struct sebpf_flow_key *k = &u->flow;

	__builtin_memset(u, 0, sizeof(*u));
	k->netns = p->netns;
	k->serial = serial;
	k->family = p->family;
	k->protocol = p->protocol;
	k->local_port = p->dport;
	k->remote_port = p->sport;
	__builtin_memcpy(k->remote_addr, p->saddr, 16);
	if (p->protocol == IPPROTO_ICMP || p->protocol == IPPROTO_ICMPV6) {
		k->local_port = p->sport; /* echo identifier */
		k->remote_port = 0;
	}
	if (sebpf_is_nd_from_link(p)) {
		k->local_port = 0;
		k->remote_port = SEBPF_FLOW_NEIGHBOUR;
	}
}

static __always_inline __u64 sebpf_flow_idle_ns(__u8 protocol)
{
	return protocol == IPPROTO_TCP ? sebpf_flow_idle_tcp_ns : sebpf_flow_idle_other_ns;
}

/* An inbound packet that opens a flow: TCP SYN without ACK, any UDP
 * datagram, an ICMP echo request, or ND from a neighbour on the link (so the
 * workload may answer it, at its own address). */
static __always_inline int sebpf_opens_flow(const struct sebpf_pkt *p)
{
	if (!p->has_l4)
		return 0;
	switch (p->protocol) {
	case IPPROTO_TCP:
		return (p->tcp_flags & (SEBPF_TCP_FLAG_SYN | SEBPF_TCP_FLAG_ACK)) ==
		       SEBPF_TCP_FLAG_SYN;
	case IPPROTO_UDP:
		return 1;
	case IPPROTO_ICMP:
		return p->icmp_type == SEBPF_ICMP_ECHO_REQUEST;
	case IPPROTO_ICMPV6:
		return p->icmp_type == SEBPF_ICMPV6_ECHO_REQUEST || sebpf_is_nd_from_link(p);
	}
	return 0;
}

/* A flow-table entry still in use at `now`, its age refreshed at most
 * once a second. */
static __always_inline int sebpf_flow_fresh(struct sebpf_flow_value *v, __u64 now, __u64 idle_ns)
{
	if (!v || now - v->last_seen >= idle_ns)
		return 0;
	if (now - v->last_seen >= SEBPF_FLOW_REFRESH_NS)
		v->last_seen = now;
	return 1;
}

/* Is this UDP datagram from the outside an answer on a flow the workload
 * opened (either kind)? Then it opens nothing: were it to open an inbound
 * flow, the workload's datagrams on it would be replies, which pass
 * whatever the rules say after the allow that opened the flow has gone.
 * The answer keeps the entry in use, so a peer that goes on sending while
 * the workload is refused never comes to count as having opened the flow. */
static __always_inline int sebpf_answers_opened_udp(const struct sebpf_attachment *att,
						    const struct sebpf_pkt *p, __u64 now)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	void *opened;

	opened = sebpf_table_of(att, SEBPF_TRACK_OPENED);
	if (!opened)
		return 0;
	sebpf_flow_key_inbound(&k, att->serial, p);
	k.flow.kind = SEBPF_OPENED_LEARNED;
	v = bpf_map_lookup_elem(opened, &k);
	if (!v) {
		k.flow.kind = SEBPF_OPENED_UDP_OTHER;
		v = bpf_map_lookup_elem(opened, &k);
	}
	return sebpf_flow_fresh(v, now, sebpf_flow_idle_other_ns);
}

/* A flow the outside opened stays the outside's: an inbound flow already
 * there is refreshed before anything else is asked. What comes from the
 * host opens none: the workload may always answer it (its endpoint, a
 * cgroup's loopback), and its own DNS lookups, a flow per query's source
 * port, would push the outside's flows out of the table. */
static __always_inline void sebpf_track_inbound(const struct sebpf_attachment *att,
						const struct sebpf_pkt *p)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	struct sebpf_flow_value nv;
	void *flows;
	__u64 now;

	if (!sebpf_opens_flow(p) || sebpf_comes_from_host(att, p))
		return;
	flows = sebpf_table_of(att, SEBPF_TRACK_FLOWS);
	if (!flows)
		return;
	sebpf_flow_key_inbound(&k, att->serial, p);
	now = sebpf_flow_clock();
	v = bpf_map_lookup_elem(flows, &k);
	if (v && now - v->last_seen < sebpf_flow_idle_ns(p->protocol)) {
		if (now - v->last_seen >= SEBPF_FLOW_REFRESH_NS)
			v->last_seen = now;
		return;
	}
	if (p->protocol == IPPROTO_UDP && sebpf_answers_opened_udp(att, p, now))
		return;
	nv.last_seen = now;
	bpf_map_update_elem(flows, &k, &nv, BPF_ANY);
}

/* A connection closing: what is left of it may pass for this long. */
#define SEBPF_CONN_CLOSING_NS (30ULL * 1000000000ULL)

/*
 * The workload sends a packet that opens, or goes on with, a flow of its
 * own, allowed under `learned` or not: remember the flow (see enum
 * sebpf_opened_kind). A TCP connection only by its SYN, and only under a
 * learned allow (a SYN-ACK opens no inbound flow, so nothing else needs
 * remembering); a UDP flow by any datagram. A busy UDP flow costs one
 * lookup a datagram and a write a second. A flow the outside opened may be
 * remembered too, and stays the outside's: sebpf_track_inbound asks for
 * the inbound flow first, and a reply is a reply whatever else is known.
 */
static __always_inline void sebpf_remember_opened(const struct sebpf_attachment *att,
						  const struct sebpf_pkt *p,
						  struct sebpf_clock *clock, int learned)
{
	union sebpf_track_key k;
	struct sebpf_flow_value nv;
	void *opened;

	if (!p->has_l4)
		return;
	if (p->protocol == IPPROTO_TCP) {
		if (!learned || (p->tcp_flags & (SEBPF_TCP_FLAG_SYN | SEBPF_TCP_FLAG_ACK)) !=
				    SEBPF_TCP_FLAG_SYN)
			return;
	} else if (p->protocol != IPPROTO_UDP) {
		return;
	}
	opened = sebpf_table_of(att, SEBPF_TRACK_OPENED);
	if (!opened)
		return;
	sebpf_flow_key_outbound(&k, att->serial, p);
	nv.last_seen = sebpf_flow_now(clock);
	if (p->protocol == IPPROTO_UDP) {
		k.flow.kind = learned ? SEBPF_OPENED_LEARNED : SEBPF_OPENED_UDP_OTHER;
		if (sebpf_flow_fresh(bpf_map_lookup_elem(opened, &k), nv.last_seen,
				     sebpf_flow_idle_other_ns))
			return;
	}
	bpf_map_update_elem(opened, &k, &nv, BPF_ANY);
}

/* Is this outbound packet part of a flow the workload opened under a
 * learned allow, whose address's learned rule has expired since? TCP: a
 * FIN leaves it 30 s to finish closing, an RST ends it at once; a day
 * without packets ends it too. UDP: 180 s without a datagram either way. */
static __always_inline int sebpf_is_kept_conn(const struct sebpf_attachment *att,
					      const struct sebpf_pkt *p, struct sebpf_clock *clock)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	void *conns;
	__u64 now;

	if (!p->has_l4 || (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP))
		return 0;
	conns = sebpf_table_of(att, SEBPF_TRACK_OPENED);
	if (!conns)
		return 0;
	sebpf_flow_key_outbound(&k, att->serial, p); /* kind SEBPF_OPENED_LEARNED */
	v = bpf_map_lookup_elem(conns, &k);
	if (!v)
		return 0;
	now = sebpf_flow_now(clock);
	if (p->protocol == IPPROTO_UDP)
		return sebpf_flow_fresh(v, now, sebpf_flow_idle_other_ns);
	if (now - v->last_seen >= sebpf_flow_idle_tcp_ns)
		return 0;
	if (p->tcp_flags & SEBPF_TCP_FLAG_RST) {
		bpf_map_delete_elem(conns, &k);
	} else if (p->tcp_flags & SEBPF_TCP_FLAG_FIN) {
		if (sebpf_flow_idle_tcp_ns > SEBPF_CONN_CLOSING_NS)
			v->last_seen = now - sebpf_flow_idle_tcp_ns + SEBPF_CONN_CLOSING_NS;
	} else if (now - v->last_seen >= SEBPF_FLOW_REFRESH_NS &&
		   now - v->last_seen < sebpf_flow_idle_tcp_ns - SEBPF_CONN_CLOSING_NS) {
		v->last_seen = now; /* not once closing: a FIN's 30 s are final */
	}
	return 1;
}

/* Is this outbound packet a reply on a flow the outside opened? */
static __always_inline int sebpf_is_reply(const struct sebpf_attachment *att,
					  const struct sebpf_pkt *p, struct sebpf_clock *clock)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	void *flows;
	__u64 now;

	if (!p->has_l4)
		return 0;
	if (p->protocol == IPPROTO_ICMP && p->icmp_type != SEBPF_ICMP_ECHO_REPLY)
		return 0;
	if (p->protocol == IPPROTO_ICMPV6 && p->icmp_type != SEBPF_ICMPV6_ECHO_REPLY)
		return 0;
	if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP &&
	    p->protocol != IPPROTO_ICMP && p->protocol != IPPROTO_ICMPV6)
		return 0;
	flows = sebpf_table_of(att, SEBPF_TRACK_FLOWS);
	if (!flows)
		return 0;
	sebpf_flow_key_outbound(&k, att->serial, p);
	if (p->protocol == IPPROTO_ICMP || p->protocol == IPPROTO_ICMPV6) {
		k.flow.local_port = p->sport;
		k.flow.remote_port = 0;
	}
	v = bpf_map_lookup_elem(flows, &k);
	if (!v)
		return 0;
	now = sebpf_flow_now(clock);
	if (now - v->last_seen >= sebpf_flow_idle_ns(p->protocol))
		return 0;
	if (now - v->last_seen >= SEBPF_FLOW_REFRESH_NS)
		v->last_seen = now;
	return 1;
}

/* Has this on-link neighbour sent the workload ND lately (so the workload
 * may answer it, or check it is still there, at its unicast address)? */
static __always_inline int sebpf_is_known_neighbour(const struct sebpf_attachment *att,
						    const struct sebpf_pkt *p,
						    struct sebpf_clock *clock)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	void *flows;

	flows = sebpf_table_of(att, SEBPF_TRACK_FLOWS);
	if (!flows)
		return 0;
	__builtin_memset(&k, 0, sizeof(k));
	k.flow.netns = p->netns;
	k.flow.serial = att->serial;
	k.flow.family = AF_INET6;
	k.flow.protocol = IPPROTO_ICMPV6;
	k.flow.remote_port = SEBPF_FLOW_NEIGHBOUR;
	__builtin_memcpy(k.flow.remote_addr, p->daddr, 16);
	v = bpf_map_lookup_elem(flows, &k);
	return v && sebpf_flow_now(clock) - v->last_seen < sebpf_flow_idle_other_ns;
}

/* How long the later fragments of a reply may follow its first: the
 * kernel's default reassembly timeout (net.ipv4.ipfrag_time). */
#define SEBPF_FRAG_TIMEOUT_NS (30ULL * 1000000000ULL)

static __always_inline void sebpf_frag_key(union sebpf_track_key *u, __u32 serial,
					   const struct sebpf_pkt *p)
{
	struct sebpf_frag_key *k = &u->frag;

	__builtin_memset(u, 0, sizeof(*u));
	k->netns = p->netns;
	k->serial = serial;
	k->id = p->frag_id;
	k->family = p->family;
	k->protocol = p->protocol;
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
}

static __always_inline void sebpf_remember_reply_fragments(const struct sebpf_attachment *att,
							   const struct sebpf_pkt *p,
							   struct sebpf_clock *clock)
{
	union sebpf_track_key k;
	struct sebpf_flow_value v = {.last_seen = sebpf_flow_now(clock)};
	void *frags;

	frags = sebpf_table_of(att, SEBPF_TRACK_REPLY_FRAGS);
	if (!frags)
		return;
	sebpf_frag_key(&k, att->serial, p);
	bpf_map_update_elem(frags, &k, &v, BPF_ANY);
}

static __always_inline int sebpf_is_reply_fragment(const struct sebpf_attachment *att,
						   const struct sebpf_pkt *p,
						   struct sebpf_clock *clock)
{
	union sebpf_track_key k;
	struct sebpf_flow_value *v;
	void *frags;

	frags = sebpf_table_of(att, SEBPF_TRACK_REPLY_FRAGS);
	if (!frags)
		return 0;
	sebpf_frag_key(&k, att->serial, p);
	v = bpf_map_lookup_elem(frags, &k);
	return v && sebpf_flow_now(clock) - v->last_seen < SEBPF_FRAG_TIMEOUT_NS;
}

#endif /* SEBPF_FLOWS_BPF_H */
