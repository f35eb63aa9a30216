/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Packet parsing shared by the TC and cgroup_skb programs: from an skb and
 * the offset of its IP header to the few fields a decision needs.
 * bpf_skb_load_bytes() is used instead of direct packet access so that
 * non-linear skbs parse the same way in both program types.
 */
#ifndef SEBPF_PACKET_BPF_H
#define SEBPF_PACKET_BPF_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define SEBPF_ICMP_ECHO_REPLY 0
#define SEBPF_ICMP_ECHO_REQUEST 8
#define SEBPF_ICMPV6_ECHO_REQUEST 128
#define SEBPF_ICMPV6_ECHO_REPLY 129

#define SEBPF_TCP_FLAG_FIN 0x01
#define SEBPF_TCP_FLAG_SYN 0x02
#define SEBPF_TCP_FLAG_RST 0x04
#define SEBPF_TCP_FLAG_ACK 0x10

/* IPv6 extension headers walked before giving up on finding L4. */
#define SEBPF_MAX_IPV6_EXT_HEADERS 6

/* What a decision needs to know of one packet or socket call. Addresses are
 * 16 bytes; IPv4 ones are v4-mapped, the IPv4 value sits in the last word. */
struct sebpf_pkt {
	/* First, so they are 8-byte aligned: they are compared 8 bytes at a
	 * time, and the struct is passed by pointer (its layout is real). */
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 netns;   /* cookie of its network namespace; 0 on interfaces */
	__u32 frag_id; /* IPv4 identification or IPv6 fragment id, host order */
	__u8 family;
	__u8 protocol;
	__u8 has_l4;	    /* 0 for non-first fragments and unknown L4 */
	__u8 icmp_type;	    /* ICMP/ICMPv6 */
	__u8 tcp_flags;	    /* TCP */
	__u8 hop_limit;	    /* IPv4 TTL or IPv6 hop limit */
	__u16 sport;	    /* network order; ICMP echo: the identifier */
	__u16 dport;	    /* network order */
	__u8 source_routed; /* LSRR/SSRR option, or an IPv6 routing header
			     * with segments left: daddr is not where the
			     * packet is going */
	__u8 fragment;	    /* SEBPF_FRAG_* */
	__u8 dhcp_request;  /* a VM's DHCP client request (sebpf_dhcp.bpf.h) */
	__u16 l4_off;	    /* where the L4 header starts in the skb */
};

/* Where a packet stands among the fragments of its datagram. */
enum sebpf_fragment {
	SEBPF_FRAG_NONE = 0,  /* not fragmented */
	SEBPF_FRAG_FIRST = 1, /* offset 0, more to come: carries the L4 header */
	SEBPF_FRAG_LATER = 2, /* offset > 0: no L4 header */
};

static __always_inline __u32 sebpf_addr4(const __u8 addr[16]) { return *(const __u32 *)&addr[12]; }

static __always_inline void sebpf_set_addr4(__u8 addr[16], __u32 v4)
{
	*(__u64 *)&addr[0] = 0;
	*(__u32 *)&addr[8] = bpf_htonl(0x0000ffff);
	*(__u32 *)&addr[12] = v4;
}

static __always_inline void sebpf_set_addr6(__u8 addr[16], const __u32 v6[4])
{
	*(__u32 *)&addr[0] = v6[0];
	*(__u32 *)&addr[4] = v6[1];
	*(__u32 *)&addr[8] = v6[2];
	*(__u32 *)&addr[12] = v6[3];
}

/* Ports, ICMP type and echo id, TCP flags; from the start of the L4 header. */
static __always_inline int sebpf_parse_l4(struct __sk_buff *skb, __u32 off, struct sebpf_pkt *pkt)
{
	__u8 l4[14];

	pkt->l4_off = off;
	switch (pkt->protocol) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, off, l4, 14) < 0)
			return -1;
		pkt->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
		if (bpf_skb_load_bytes(skb, off, l4, 8) < 0)
			return -1;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, off, l4, 8) < 0)
			return -1;
		pkt->icmp_type = l4[0];
		/* Echo identifier, so replies can be matched to requests. */
		pkt->sport = *(__u16 *)&l4[4];
		pkt->dport = 0;
		pkt->has_l4 = 1;
		return 0;
	default:
		return 0;
	}
	pkt->sport = *(__u16 *)&l4[0];
	pkt->dport = *(__u16 *)&l4[2];
	pkt->has_l4 = 1;
	return 0;
}

#define SEBPF_IPOPT_END 0
#define SEBPF_IPOPT_NOOP 1
#define SEBPF_IPOPT_LSRR 131
#define SEBPF_IPOPT_SSRR 137
#define SEBPF_IPV4_MAX_OPTIONS 40

/* 1 if the IPv4 options ask for source routing (or cannot be walked: a
 * packet we cannot read is not one we let out), else 0. */
struct sebpf_ipopt_walk {
	__u8 opts[64]; /* 64, not 40: indexes are masked with 63 */
	__u32 len;
	__u32 i;
	int routed;
};

/* One step of the walk over the options; 1 stops it. Run by bpf_loop, so
 * the verifier checks it once instead of once per path through the walk
 * (unrolled, the walk alone exceeded its budget). */
static long sebpf_ipopt_step(__u64 index __attribute__((unused)), void *ctx)
{
	struct sebpf_ipopt_walk *w = ctx;
	__u32 i = w->i;
	__u8 type, olen;

	if (i >= w->len || i >= SEBPF_IPV4_MAX_OPTIONS)
		return 1;
	type = w->opts[i & 63];
	if (type == SEBPF_IPOPT_END)
		return 1;
	if (type == SEBPF_IPOPT_NOOP) {
		w->i = i + 1;
		return 0;
	}
	if (type == SEBPF_IPOPT_LSRR || type == SEBPF_IPOPT_SSRR) {
		w->routed = 1;
		return 1;
	}
	olen = w->opts[(i + 1) & 63];
	if (i + 1 >= w->len || olen < 2) {
		w->routed = 1; /* malformed: not a packet we let out */
		return 1;
	}
	w->i = i + olen;
	return 0;
}

/* 1 if the IPv4 options ask for source routing (or cannot be walked: a
 * packet we cannot read is not one we let out), else 0. */
static __always_inline int sebpf_ipv4_source_routed(struct __sk_buff *skb, __u32 off, __u32 ihl)
{
	struct sebpf_ipopt_walk w = {};

	w.len = (ihl - 5) * 4;
	if (w.len == 0)
		return 0;
	if (w.len > SEBPF_IPV4_MAX_OPTIONS)
		return 1;
	if (bpf_skb_load_bytes(skb, off + sizeof(struct iphdr), w.opts, w.len) < 0)
		return 1;
	/* Each option is at least one byte: 40 steps walk them all. */
	bpf_loop(SEBPF_IPV4_MAX_OPTIONS, sebpf_ipopt_step, &w, 0);
	return w.routed;
}

static __always_inline int sebpf_parse_ipv4(struct __sk_buff *skb, __u32 off, struct sebpf_pkt *pkt)
{
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	pkt->family = AF_INET;
	pkt->protocol = ip.protocol;
	pkt->hop_limit = ip.ttl;
	sebpf_set_addr4(pkt->saddr, ip.saddr);
	sebpf_set_addr4(pkt->daddr, ip.daddr);
	pkt->source_routed = sebpf_ipv4_source_routed(skb, off, ip.ihl);
	pkt->frag_id = bpf_ntohs(ip.id);
	/* A non-first fragment carries no L4 header: it is judged by address,
	 * or as part of a reply whose first fragment was one. */
	if (ip.frag_off & bpf_htons(0x1fff)) {
		pkt->fragment = SEBPF_FRAG_LATER;
		return 0;
	}
	if (ip.frag_off & bpf_htons(0x2000))
		pkt->fragment = SEBPF_FRAG_FIRST;
	return sebpf_parse_l4(skb, off + ip.ihl * 4, pkt);
}

static __always_inline int sebpf_parse_ipv6(struct __sk_buff *skb, __u32 off, struct sebpf_pkt *pkt)
{
	struct ipv6hdr ip6;
	__u8 ext[8];
	__u8 nexthdr;

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return -1;
	if (ip6.version != 6)
		return -1;
	pkt->family = AF_INET6;
	pkt->hop_limit = ip6.hop_limit;
	sebpf_set_addr6(pkt->saddr, ip6.saddr.in6_u.u6_addr32);
	sebpf_set_addr6(pkt->daddr, ip6.daddr.in6_u.u6_addr32);
	nexthdr = ip6.nexthdr;
	off += sizeof(ip6);

	for (int i = 0; i < SEBPF_MAX_IPV6_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case IPPROTO_ROUTING:
			/* next header, length, type, segments left */
			if (bpf_skb_load_bytes(skb, off, ext, 4) < 0)
				return -1;
			if (ext[3] != 0)
				pkt->source_routed = 1;
			nexthdr = ext[0];
			off += (ext[1] + 1) * 8;
			break;
		case IPPROTO_HOPOPTS:
		case IPPROTO_DSTOPTS:
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return -1;
			nexthdr = ext[0];
			off += (ext[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return -1;
			nexthdr = ext[0];
			off += (ext[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if (bpf_skb_load_bytes(skb, off, ext, 8) < 0)
				return -1;
			pkt->protocol = ext[0];
			pkt->frag_id = bpf_ntohl(*(__u32 *)&ext[4]);
			/* Fragment offset != 0: no L4 header here. */
			if ((*(__u16 *)&ext[2]) & bpf_htons(0xfff8)) {
				pkt->fragment = SEBPF_FRAG_LATER;
				return 0;
			}
			if (ext[3] & 1)
				pkt->fragment = SEBPF_FRAG_FIRST;
			nexthdr = ext[0];
			off += 8;
			break;
		default:
			pkt->protocol = nexthdr;
			return sebpf_parse_l4(skb, off, pkt);
		}
	}
	/* Too many extension headers: the L4 header is out of reach. */
	pkt->protocol = nexthdr;
	return 0;
}

#endif /* SEBPF_PACKET_BPF_H */
