/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decision: given an attachment and a destination, allow or deny, and
 * why. Shared by every program so that a connect() and the packets of the
 * same flow are judged by one function.
 */
#ifndef SEBPF_POLICY_BPF_H
#define SEBPF_POLICY_BPF_H

#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"

/* Load-time settings (rodata), set by the loader before load. */
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

/* Reply flows are refreshed at most this often, to keep map writes off the
 * per-packet path of a busy flow. */
#define SEBPF_FLOW_REFRESH_NS 1000000000ULL

/* Nesting depth searched for an attached ancestor cgroup. */
#define SEBPF_MAX_CGROUP_DEPTH 32

enum sebpf_rule_match {
	SEBPF_MATCH_NONE = 0,
	SEBPF_MATCH_ALLOW = 1,
	SEBPF_MATCH_DENY = 2,
	SEBPF_MATCH_ALLOW_LEARNED = 3, /* an allow learned from DNS */
};

#define SEBPF_DNS_PORT 53

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
static __always_inline __u64 sebpf_flow_clock(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 sebpf_flow_now(struct sebpf_clock *c)
{
	if (!c->flow_now)
		c->flow_now = sebpf_flow_clock();
	return c->flow_now;
}

static __always_inline int sebpf_side_active(__u64 until, struct sebpf_clock *c)
{
	return until == SEBPF_EXPIRY_NEVER || (until && until > sebpf_now(c));
}

static __always_inline int sebpf_rule_match(const struct sebpf_rule *r, struct sebpf_clock *c)
{
	if (sebpf_side_active(r->deny_until, c))
		return SEBPF_MATCH_DENY;
	if (sebpf_side_active(r->allow_until, c))
		return (r->flags & SEBPF_RULE_ALLOW_LEARNED) ? SEBPF_MATCH_ALLOW_LEARNED
							     : SEBPF_MATCH_ALLOW;
	return SEBPF_MATCH_NONE; /* both sides expired or absent */
}

/*
 * Longest prefix first; an expired entry does not match, so the lookup is
 * repeated with the key limited to shorter prefixes (an LPM lookup never
 * returns a prefix longer than the key's prefixlen). Every round strictly
 * shortens the prefix, so 33 rounds (IPv4) or 129 (IPv6) are exhaustive.
 */
/* An IPv6 address as a type, so a global function can take a pointer to it. */
struct sebpf_addr6 {
	__u8 b[16];
};

/*
 * A learned host in the daemon's table (see sebpf_learned_slot): its two
 * buckets, every slot. A slot counts only if its seq was the same even
 * number before and after its fields were read: the daemon rewrites a slot
 * between an odd and the next even seq. x86-64 neither reorders loads nor
 * stores, so the compiler's barriers are the only ones needed.
 */
static __always_inline int sebpf_learned_holds(__u32 ruleset, __u32 family, const __u8 *addr,
					       struct sebpf_clock *now)
{
	__u64 word[2]; /* aligned: the stack admits no misaligned 8-byte read */
	__u64 hash;
	__u32 index[2];

	if (!sebpf_learned_buckets)
		return 0;
	__builtin_memcpy(word, addr, 16);
	hash = sebpf_learned_hash(ruleset, family, (const __u8 *)word);
	index[0] = hash & (sebpf_learned_buckets - 1);
	index[1] = (hash >> 32) & (sebpf_learned_buckets - 1);
	for (int b = 0; b < 2; b++) {
		struct sebpf_learned_bucket *bucket =
		    bpf_map_lookup_elem(&sebpf_learned, &index[b]);

		if (!bucket)
			continue;
		for (int i = 0; i < SEBPF_LEARNED_WAYS; i++) {
			struct sebpf_learned_slot *slot = &bucket->slot[i];
			__u32 seq = *(volatile __u32 *)&slot->seq;
			__u64 until;

			if (seq & 1)
				continue;
			asm volatile("" ::: "memory");
			if (slot->ruleset != ruleset || slot->family != family ||
			    *(__u64 *)&slot->addr[0] != word[0] ||
			    *(__u64 *)&slot->addr[8] != word[1])
				continue;
			until = slot->until;
			asm volatile("" ::: "memory");
			if (*(volatile __u32 *)&slot->seq != seq)
				continue;
			return until > sebpf_now(now);
		}
	}
	return 0;
}

/*
 * The rule walks are global functions: the verifier checks each once, on
 * its own, instead of at every call site on every path of every program
 * (inlined, they exhausted its budget). Their pointer arguments may be
 * NULL as far as the verifier knows, hence the checks. With skip_learned,
 * an allow learned from DNS is passed over as if absent (learned rules are
 * only ever hosts, so only the hash lookup can find one): the user's own
 * rules decide. Prefix rules shorter than min_prefixlen are passed over too
 * (the loopback check: see sebpf_loopback_denied).
 */
__noinline int sebpf_match4(__u32 ruleset, __u32 addr, struct sebpf_clock *now, int skip_learned,
			    __u32 min_prefixlen)
{
	struct sebpf_host4_key hkey = {.ruleset = ruleset, .addr = addr};
	struct sebpf_prefix4_key pkey = {
	    .prefixlen = SEBPF_RULESET_BITS + 32,
	    .ruleset = ruleset,
	    .addr = addr,
	};
	struct sebpf_rule *r;
	int m;

	if (!now)
		return SEBPF_MATCH_NONE;

	r = bpf_map_lookup_elem(&sebpf_host4, &hkey);
	if (r) {
		m = sebpf_rule_match(r, now);
		if (m != SEBPF_MATCH_NONE && !(skip_learned && m == SEBPF_MATCH_ALLOW_LEARNED))
			return m;
	}
	if (!skip_learned) {
		struct sebpf_addr6 a = {};

		__builtin_memcpy(a.b, &addr, 4);
		if (sebpf_learned_holds(ruleset, AF_INET, a.b, now))
			return SEBPF_MATCH_ALLOW_LEARNED;
	}
	for (int i = 0; i <= 32; i++) {
		r = bpf_map_lookup_elem(&sebpf_prefix4, &pkey);
		if (!r || r->prefixlen < min_prefixlen)
			return SEBPF_MATCH_NONE;
		m = sebpf_rule_match(r, now);
		if (m != SEBPF_MATCH_NONE)
			return m;
		if (r->prefixlen == 0)
			return SEBPF_MATCH_NONE;
		pkey.prefixlen = SEBPF_RULESET_BITS + r->prefixlen - 1;
	}
	return SEBPF_MATCH_NONE;
}

/* The NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): a translator on the
 * path delivers such a packet to the IPv4 host in its last 32 bits, so a
 * deny rule for that host must hold there too. */
static __always_inline int sebpf_is_nat64(const __u8 a[16])
{
	return a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 &&
	       a[5] == 0 && a[6] == 0 && a[7] == 0 && a[8] == 0 && a[9] == 0 && a[10] == 0 &&
	       a[11] == 0;
}

/* Two families' verdicts on one destination: a deny in either wins, then
 * an explicit allow in either, then a learned one. */
static __always_inline int sebpf_match_both(int a, int b)
{
	if (a == SEBPF_MATCH_DENY || b == SEBPF_MATCH_DENY)
		return SEBPF_MATCH_DENY;
	if (a == SEBPF_MATCH_ALLOW || b == SEBPF_MATCH_ALLOW)
		return SEBPF_MATCH_ALLOW;
	if (a == SEBPF_MATCH_ALLOW_LEARNED || b == SEBPF_MATCH_ALLOW_LEARNED)
		return SEBPF_MATCH_ALLOW_LEARNED;
	return SEBPF_MATCH_NONE;
}

__noinline int sebpf_match6(__u32 ruleset, const struct sebpf_addr6 *addr, struct sebpf_clock *now,
			    int skip_learned, __u32 min_prefixlen)
{
	struct sebpf_host6_key hkey = {.ruleset = ruleset};
	struct sebpf_prefix6_key pkey = {
	    .prefixlen = SEBPF_RULESET_BITS + 128,
	    .ruleset = ruleset,
	};
	struct sebpf_rule *r;
	int m;

	if (!addr || !now)
		return SEBPF_MATCH_NONE;

	__builtin_memcpy(hkey.addr, addr->b, 16);
	__builtin_memcpy(pkey.addr, addr->b, 16);
	r = bpf_map_lookup_elem(&sebpf_host6, &hkey);
	if (r) {
		m = sebpf_rule_match(r, now);
		if (m != SEBPF_MATCH_NONE && !(skip_learned && m == SEBPF_MATCH_ALLOW_LEARNED))
			return m;
	}
	if (!skip_learned && sebpf_learned_holds(ruleset, AF_INET6, hkey.addr, now))
		return SEBPF_MATCH_ALLOW_LEARNED;
	for (int i = 0; i <= 128; i++) {
		r = bpf_map_lookup_elem(&sebpf_prefix6, &pkey);
		if (!r || r->prefixlen < min_prefixlen)
			return SEBPF_MATCH_NONE;
		m = sebpf_rule_match(r, now);
		if (m != SEBPF_MATCH_NONE)
			return m;
		if (r->prefixlen == 0)
			return SEBPF_MATCH_NONE;
		pkey.prefixlen = SEBPF_RULESET_BITS + r->prefixlen - 1;
	}
	return SEBPF_MATCH_NONE;
}

static __always_inline int sebpf_addr6_is_zero(const __u8 a[16])
{
	return (*(__u64 *)&a[0] | *(__u64 *)&a[8]) == 0;
}

static __always_inline int sebpf_addr6_equal(const __u8 a[16], const __u8 b[16])
{
	return *(__u64 *)&a[0] == *(__u64 *)&b[0] && *(__u64 *)&a[8] == *(__u64 *)&b[8];
}

static __always_inline int sebpf_addr_is_loopback(__u8 family, const __u8 a[16])
{
	if (family == AF_INET)
		return (bpf_ntohl(sebpf_addr4(a)) >> 24) == 127;
	return *(__u64 *)&a[0] == 0 && *(__u32 *)&a[8] == 0 && *(__u32 *)&a[12] == bpf_htonl(1);
}

static __always_inline int sebpf_is_loopback(const struct sebpf_pkt *p)
{
	return sebpf_addr_is_loopback(p->family, p->daddr);
}

/* Is addr the address (of the packet's family) the attachment's DNS
 * endpoint is served on? */
static __always_inline int sebpf_is_endpoint_address(const struct sebpf_attachment *att,
						     const struct sebpf_pkt *p, const __u8 addr[16])
{
	if (p->family == AF_INET)
		return att->dns_addr4 && sebpf_addr4(addr) == att->dns_addr4;
	return !sebpf_addr6_is_zero(att->dns_addr6) && sebpf_addr6_equal(addr, att->dns_addr6);
}

/* Is addr:port (one end of the packet) the attachment's DNS endpoint? */
static __always_inline int sebpf_is_endpoint_end(const struct sebpf_attachment *att,
						 const struct sebpf_pkt *p, const __u8 addr[16],
						 __u16 port)
{
	if (!att->dns_port || !p->has_l4 || port != att->dns_port)
		return 0;
	if (p->protocol != IPPROTO_UDP && p->protocol != IPPROTO_TCP)
		return 0;
	return sebpf_is_endpoint_address(att, p, addr);
}

static __always_inline int sebpf_is_dns_endpoint(const struct sebpf_attachment *att,
						 const struct sebpf_pkt *p)
{
	return sebpf_is_endpoint_end(att, p, p->daddr, p->dport);
}

/* A port of another attachment's DNS endpoint: using it would put this
 * workload under that attachment's domain rules. Judged where endpoints
 * share an address: on loopback (cgroups), and on the address of this
 * attachment's own endpoint (the guests of one bridge are served on its
 * address, a port each). */
static __always_inline int sebpf_is_other_dns_endpoint(const struct sebpf_attachment *att,
						       const struct sebpf_pkt *p)
{
	__u16 port = bpf_ntohs(p->dport);

	return p->has_l4 && (p->protocol == IPPROTO_UDP || p->protocol == IPPROTO_TCP) &&
	       sebpf_dns_port_first && port >= sebpf_dns_port_first &&
	       port <= sebpf_dns_port_last && p->dport != att->dns_port;
}

/* A cgroup's packet to loopback, or any packet to the attachment's own DNS
 * endpoint: it never leaves the host. */
static __always_inline int sebpf_stays_on_host(const struct sebpf_attachment *att,
					       const struct sebpf_pkt *p)
{
	return ((att->flags & SEBPF_ATT_F_CGROUP) && sebpf_is_loopback(p)) ||
	       sebpf_is_dns_endpoint(att, p);
}

/* The same for a packet towards the workload: from loopback (to a cgroup)
 * or from the attachment's own DNS endpoint. */
static __always_inline int sebpf_comes_from_host(const struct sebpf_attachment *att,
						 const struct sebpf_pkt *p)
{
	return ((att->flags & SEBPF_ATT_F_CGROUP) && sebpf_addr_is_loopback(p->family, p->saddr)) ||
	       sebpf_is_endpoint_end(att, p, p->saddr, p->sport);
}

/* A packet or socket call towards a DNS server's port (UDP or TCP). */
static __always_inline int sebpf_is_dns_query(const struct sebpf_pkt *p)
{
	return p->has_l4 && (p->protocol == IPPROTO_UDP || p->protocol == IPPROTO_TCP) &&
	       p->dport == bpf_htons(SEBPF_DNS_PORT);
}

/* Neighbour or router discovery with hop limit 255: it was not routed, so
 * its source is on the link. */
static __always_inline int sebpf_is_nd_from_link(const struct sebpf_pkt *p)
{
	return p->protocol == IPPROTO_ICMPV6 && p->icmp_type >= 133 && p->icmp_type <= 137 &&
	       p->hop_limit == 255;
}

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
						  const struct sebpf_pkt *p, struct sebpf_clock *clock,
						  int learned)
{
	union sebpf_track_key k;
	struct sebpf_flow_value nv;
	void *opened;

	if (!p->has_l4)
		return;
	if (p->protocol == IPPROTO_TCP) {
		if (!learned ||
		    (p->tcp_flags & (SEBPF_TCP_FLAG_SYN | SEBPF_TCP_FLAG_ACK)) != SEBPF_TCP_FLAG_SYN)
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

/*
 * DHCP requests pass whatever the rules say, and their options (a host
 * name, a client id) carry a client's bytes onto the link: so only a few
 * may pass. A budget per attachment and family, GCRA in one u64:
 * sebpf_dhcp_burst requests at once, then one per sebpf_dhcp_interval_ns,
 * more than any DHCP client needs. Racing CPUs may let one extra through.
 */
static __always_inline int sebpf_take_dhcp_budget(const struct sebpf_attachment *att,
						  const struct sebpf_pkt *p,
						  struct sebpf_clock *clock)
{
	__u32 index = att->slot * 2 + (p->family == AF_INET6);
	__u64 *tat = bpf_map_lookup_elem(&sebpf_dhcp_budget, &index);
	__u64 now, next;

	if (!tat)
		return 0;
	now = sebpf_now(clock);
	next = *tat > now ? *tat : now;
	if (next - now > (sebpf_dhcp_burst - 1) * sebpf_dhcp_interval_ns)
		return 0;
	*tat = next + sebpf_dhcp_interval_ns;
	return 1;
}

/*
 * What a link needs and cannot leave the link: IPv6 neighbour and router
 * discovery (hop limit 255) to link-local or link-scope multicast
 * destinations or to the host side's own address (the DNS endpoint's),
 * or to a neighbour that sent the workload ND itself with hop limit 255
 * (so it is on the link: the host answering for its global address), MLD
 * to link-scope multicast, and a VM's DHCP client requests (DHCPv4 to the
 * broadcast address, DHCPv6 to ff02::1:2, their payloads checked by
 * sebpf_dhcp.bpf.h, within the attachment's DHCP budget). ND to any other unicast address is not
 * exempt: a packet with hop limit 255 is still routed, and its payload would reach whoever owns the
 * address. It is judged by the rules like any packet.
 */
static __always_inline int sebpf_is_link_local_control(const struct sebpf_attachment *att,
						       const struct sebpf_pkt *p,
						       struct sebpf_clock *clock)
{
	/* DHCP is for VMs: a container's DHCP client (if any) sends through a
	 * packet socket, which cgroup programs never see, so for a cgroup the
	 * allowance would only be a broadcast channel onto the host's link. ND
	 * stays: a namespace's own ND socket may belong to the cgroup. */
	int cgroup = att->flags & SEBPF_ATT_F_CGROUP;

	if (!p->has_l4)
		return 0;
	if (p->family == AF_INET6) {
		int ll_multicast = p->daddr[0] == 0xff && p->daddr[1] == 0x02;
		int ll_unicast = p->daddr[0] == 0xfe && (p->daddr[1] & 0xc0) == 0x80;

		if (p->protocol == IPPROTO_ICMPV6) {
			__u8 t = p->icmp_type;

			if (t >= 133 && t <= 137)
				return p->hop_limit == 255 &&
				       (ll_multicast || ll_unicast ||
					(!sebpf_addr6_is_zero(att->dns_addr6) &&
					 sebpf_addr6_equal(p->daddr, att->dns_addr6)) ||
					sebpf_is_known_neighbour(att, p, clock));
			if (t == 130 || t == 131 || t == 132 || t == 143)
				return ll_multicast;
			return 0;
		}
	}
	return !cgroup && p->dhcp_request && sebpf_take_dhcp_budget(att, p, clock);
}

static __always_inline void sebpf_count(__u32 slot, enum sebpf_hook_kind hook,
					enum sebpf_reason reason)
{
	struct sebpf_counters *c = bpf_map_lookup_elem(&sebpf_counters, &slot);

	if (c && hook < SEBPF_HOOK_COUNT && reason < SEBPF_REASON_COUNT)
		c->count[hook][reason]++;
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

/* Options of one decision. */
struct sebpf_decide_opts {
	__u8 hook;	  /* enum sebpf_hook_kind */
	__u8 check_reply; /* may this be a reply on an inbound flow, or go on
			   * with a flow kept past its learned rule's TTL? */
	__u8 check_link;  /* packet-level link control allowances */
};

/*
 * Loopback is always allowed to cgroups, except where a deny rule within
 * loopback (127.0.0.0/8 or longer, ::1/128) says otherwise: a workload in
 * the host's network namespace reaches every service on the host's
 * loopback, a local forward proxy included, and such a rule is how to close
 * it. Broader rules do not reach loopback, so that a catch-all deny
 * (0.0.0.0/0) does not cut a workload's own local connections.
 */
static __always_inline int sebpf_loopback_denied(const struct sebpf_attachment *att,
						 const struct sebpf_pkt *p,
						 struct sebpf_clock *clock)
{
	if (p->family == AF_INET)
		return sebpf_match4(att->ruleset, sebpf_addr4(p->daddr), clock, 1, 8) ==
		       SEBPF_MATCH_DENY;
	return sebpf_match6(att->ruleset, (const struct sebpf_addr6 *)p->daddr, clock, 1, 128) ==
	       SEBPF_MATCH_DENY;
}

/*
 * The verdict for one packet or socket call, counted. Order matters:
 * disabled, then the always-allowed set, then block_all, then rules (a
 * matching rule decides), then the mode's default, where an allowlist still
 * lets replies on inbound flows through. Returns 1 to allow, 0 to deny.
 */
static __always_inline int sebpf_decide(const struct sebpf_attachment *att,
					const struct sebpf_pkt *p, struct sebpf_decide_opts o)
{
	struct sebpf_clock clock = {};
	enum sebpf_reason reason;
	int dns, m;

	if (att->mode == SEBPF_MODE_DISABLED) {
		reason = SEBPF_REASON_ALLOW_MODE_DISABLED;
		/* So that its UDP flows end if enforcement starts. */
		if (o.hook == SEBPF_HOOK_PACKET && !sebpf_stays_on_host(att, p))
			sebpf_remember_opened(att, p, &clock, 0);
		goto out;
	}
	/* Its destination address is only the first hop: no rule, and no
	 * allowance, can be judged on it. Workloads have no use for it. */
	if (p->source_routed) {
		reason = SEBPF_REASON_DENY_MALFORMED;
		goto out;
	}
	if ((att->flags & SEBPF_ATT_F_CGROUP) && sebpf_is_loopback(p)) {
		if (sebpf_is_other_dns_endpoint(att, p))
			reason = SEBPF_REASON_DENY_RESOLVER;
		else if (!sebpf_is_dns_endpoint(att, p) && sebpf_loopback_denied(att, p, &clock))
			reason = SEBPF_REASON_DENY_RULE;
		else
			reason = SEBPF_REASON_ALLOW_LOOPBACK;
		goto out;
	}
	if (sebpf_is_dns_endpoint(att, p)) {
		reason = SEBPF_REASON_ALLOW_DNS_ENDPOINT;
		goto out;
	}
	if (sebpf_is_other_dns_endpoint(att, p) && sebpf_is_endpoint_address(att, p, p->daddr)) {
		reason = SEBPF_REASON_DENY_RESOLVER;
		goto out;
	}
	if (o.check_link && sebpf_is_link_local_control(att, p, &clock)) {
		reason = SEBPF_REASON_ALLOW_LINK_LOCAL;
		goto out;
	}
	if (att->mode != SEBPF_MODE_ALLOWLIST && att->mode != SEBPF_MODE_DENYLIST) {
		/* block_all, or a mode this program does not know: fail closed */
		reason = SEBPF_REASON_DENY_BLOCK_ALL;
		goto out;
	}
	/* Name resolution goes through the endpoint, where the domain rules
	 * apply: another resolver only by an explicit allow, never by an
	 * address learned from DNS. */
	dns = sebpf_is_dns_query(p);
	if (p->family == AF_INET) {
		m = sebpf_match4(att->ruleset, sebpf_addr4(p->daddr), &clock, dns, 0);
	} else {
		m = sebpf_match6(att->ruleset, (const struct sebpf_addr6 *)p->daddr, &clock, dns, 0);
		if (sebpf_is_nat64(p->daddr))
			m = sebpf_match_both(
			    m, sebpf_match4(att->ruleset, sebpf_addr4(p->daddr), &clock, dns, 0));
	}
	if (m == SEBPF_MATCH_DENY) {
		reason = SEBPF_REASON_DENY_RULE;
	} else if (dns && m != SEBPF_MATCH_ALLOW) {
		reason = SEBPF_REASON_DENY_RESOLVER;
	} else if (m == SEBPF_MATCH_ALLOW || m == SEBPF_MATCH_ALLOW_LEARNED) {
		reason = SEBPF_REASON_ALLOW_RULE;
		if (o.hook == SEBPF_HOOK_PACKET)
			sebpf_remember_opened(att, p, &clock, m == SEBPF_MATCH_ALLOW_LEARNED);
	} else if (att->mode == SEBPF_MODE_DENYLIST) {
		reason = SEBPF_REASON_ALLOW_DEFAULT;
		if (o.hook == SEBPF_HOOK_PACKET)
			sebpf_remember_opened(att, p, &clock, 0);
	} else if (o.check_reply && sebpf_is_reply(att, p, &clock)) {
		reason = SEBPF_REASON_ALLOW_REPLY;
		if (p->fragment == SEBPF_FRAG_FIRST)
			sebpf_remember_reply_fragments(att, p, &clock);
	} else if (o.check_reply && p->fragment == SEBPF_FRAG_LATER &&
		   sebpf_is_reply_fragment(att, p, &clock)) {
		reason = SEBPF_REASON_ALLOW_REPLY;
	} else if (o.check_reply && sebpf_is_kept_conn(att, p, &clock)) {
		reason = SEBPF_REASON_ALLOW_KEPT_CONNECTION;
	} else {
		reason = SEBPF_REASON_DENY_DEFAULT;
	}
out:
	sebpf_count(att->slot, o.hook, reason);
	return reason < SEBPF_FIRST_DENY_REASON;
}

/* Deny a packet we could not parse, unless enforcement is off. */
static __always_inline int sebpf_decide_malformed(const struct sebpf_attachment *att,
						  enum sebpf_reason deny_reason)
{
	if (att->mode == SEBPF_MODE_DISABLED) {
		sebpf_count(att->slot, SEBPF_HOOK_PACKET, SEBPF_REASON_ALLOW_MODE_DISABLED);
		return 1;
	}
	sebpf_count(att->slot, SEBPF_HOOK_PACKET, deny_reason);
	return 0;
}

#endif /* SEBPF_POLICY_BPF_H */
