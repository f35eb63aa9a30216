/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A VM's DHCP client requests: the one kind of broadcast an interface
 * attachment lets out whatever the rules say, so the payload must be a
 * client's request and nothing else. Without this check any UDP datagram
 * from port 68 to 255.255.255.255:67 (or 546 to ff02::1:2 port 547)
 * passed: a channel onto the host's link for any bytes, and a way to
 * exhaust a DHCP server's pool with made-up hardware addresses.
 *
 * DHCPv4 (RFC 2131): op BOOTREQUEST, Ethernet hardware addresses, chaddr
 * the frame's own source MAC, yiaddr/siaddr/giaddr and the sname and file
 * fields empty (a client has no use for them), the magic cookie, then
 * well-formed options ending with END and only padding after it, among
 * them a DHCP message type a client sends. DHCPv6 (RFC 8415): a message
 * type a client sends, then options that exactly fill the datagram. Both
 * are at most SEBPF_DHCP_MAX_PAYLOAD bytes (a 576-byte IPv4 datagram, the
 * size every DHCP peer must accept) and not fragmented. Options such as the
 * host name can still carry a little data to the link: a channel that
 * small, and only to the link, is what this check leaves.
 */
#ifndef SEBPF_DHCP_BPF_H
#define SEBPF_DHCP_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sebpf_packet.bpf.h"

#define SEBPF_DHCP_MAX_PAYLOAD 548
#define SEBPF_DHCP4_FIXED 240 /* BOOTP header and magic cookie */
#define SEBPF_DHCP4_OPT_PAD 0
#define SEBPF_DHCP4_OPT_MSG_TYPE 53
#define SEBPF_DHCP4_OPT_END 255
#define SEBPF_DHCP6_OPTIONS 4 /* after msg-type and transaction-id */

struct sebpf_dhcp_walk {
	struct __sk_buff *skb;
	__u32 off;  /* next byte, from the start of the payload */
	__u32 len;  /* payload bytes */
	__u32 base; /* offset of the payload in the skb */
	__u8 ended;
	__u8 msg_type;
	__u8 bad;
};

/* One step over DHCPv4 options; 1 stops the walk. By bpf_loop, so the
 * verifier checks one step rather than every path through the walk. */
static long sebpf_dhcp4_step(__u64 index __attribute__((unused)), void *ctx)
{
	struct sebpf_dhcp_walk *w = ctx;
	__u8 opt[2];

	if (w->off >= w->len)
		return 1;
	if (bpf_skb_load_bytes(w->skb, w->base + w->off, opt, 1) < 0) {
		w->bad = 1;
		return 1;
	}
	if (w->ended) { /* after END: padding only */
		w->bad = opt[0] != SEBPF_DHCP4_OPT_PAD;
		w->off++;
		return w->bad;
	}
	if (opt[0] == SEBPF_DHCP4_OPT_PAD) {
		w->off++;
		return 0;
	}
	if (opt[0] == SEBPF_DHCP4_OPT_END) {
		w->ended = 1;
		w->off++;
		return 0;
	}
	if (w->off + 2 > w->len || bpf_skb_load_bytes(w->skb, w->base + w->off, opt, 2) < 0 ||
	    w->off + 2 + opt[1] > w->len) {
		w->bad = 1;
		return 1;
	}
	if (opt[0] == SEBPF_DHCP4_OPT_MSG_TYPE) {
		/* one byte, once */
		if (opt[1] != 1 || w->msg_type ||
		    bpf_skb_load_bytes(w->skb, w->base + w->off + 2, &w->msg_type, 1) < 0 ||
		    !w->msg_type) {
			w->bad = 1;
			return 1;
		}
	}
	w->off += 2 + opt[1];
	return 0;
}

/* One step over DHCPv6 options (code and length, two bytes each). */
static long sebpf_dhcp6_step(__u64 index __attribute__((unused)), void *ctx)
{
	struct sebpf_dhcp_walk *w = ctx;
	__u16 opt[2];

	if (w->off == w->len) {
		w->ended = 1;
		return 1;
	}
	if (w->off + 4 > w->len || bpf_skb_load_bytes(w->skb, w->base + w->off, opt, 4) < 0) {
		w->bad = 1;
		return 1;
	}
	w->off += 4 + bpf_ntohs(opt[1]);
	return 0;
}

/* The UDP payload's offset and length, if the UDP header's length fits the
 * packet and the payload is at most `max` bytes; else 0. */
static __always_inline int sebpf_udp_payload(struct __sk_buff *skb, const struct sebpf_pkt *p,
					     __u32 max, __u32 *base, __u32 *len)
{
	__u16 udp_len;

	if (bpf_skb_load_bytes(skb, p->l4_off + 4, &udp_len, 2) < 0)
		return 0;
	udp_len = bpf_ntohs(udp_len);
	if (udp_len < 8 || udp_len - 8 > max || p->l4_off + udp_len > skb->len)
		return 0;
	*base = p->l4_off + 8;
	*len = udp_len - 8;
	return 1;
}

static __always_inline int sebpf_dhcp4_request_ok(struct __sk_buff *skb, const struct sebpf_pkt *p)
{
	struct sebpf_dhcp_walk w = {.skb = skb, .off = SEBPF_DHCP4_FIXED};
	__u8 head[44], mac[6];
	__u64 chunk[2];
	int i;

	if (!sebpf_udp_payload(skb, p, SEBPF_DHCP_MAX_PAYLOAD, &w.base, &w.len) ||
	    w.len < SEBPF_DHCP4_FIXED + 1)
		return 0;
	/* op, htype, hlen, hops; xid, secs, flags; four addresses; chaddr */
	if (bpf_skb_load_bytes(skb, w.base, head, sizeof(head)) < 0 ||
	    bpf_skb_load_bytes(skb, 6, mac, sizeof(mac)) < 0)
		return 0;
	if (head[0] != 1 || head[1] != 1 || head[2] != 6 || head[3] != 0)
		return 0;
	if ((head[10] & 0x7f) || head[11]) /* only the broadcast flag */
		return 0;
	for (i = 16; i < 28; i++) /* yiaddr, siaddr, giaddr */
		if (head[i])
			return 0;
	for (i = 0; i < 6; i++)
		if (head[28 + i] != mac[i])
			return 0;
	for (i = 34; i < 44; i++) /* chaddr padding */
		if (head[i])
			return 0;
	/* sname and file: 192 bytes, 12 loads */
	for (i = 0; i < 12; i++) {
		if (bpf_skb_load_bytes(skb, w.base + 44 + i * 16, chunk, sizeof(chunk)) < 0 ||
		    chunk[0] || chunk[1])
			return 0;
	}
	if (bpf_skb_load_bytes(skb, w.base + 236, chunk, 4) < 0 ||
	    *(__u32 *)chunk != bpf_htonl(0x63825363))
		return 0;
	/* Each step takes at least one byte. */
	bpf_loop(SEBPF_DHCP_MAX_PAYLOAD - SEBPF_DHCP4_FIXED, sebpf_dhcp4_step, &w, 0);
	if (w.bad || !w.ended || w.off != w.len)
		return 0;
	/* DISCOVER, REQUEST, DECLINE, RELEASE, INFORM */
	return w.msg_type == 1 || w.msg_type == 3 || w.msg_type == 4 || w.msg_type == 7 ||
	       w.msg_type == 8;
}

static __always_inline int sebpf_dhcp6_request_ok(struct __sk_buff *skb, const struct sebpf_pkt *p)
{
	struct sebpf_dhcp_walk w = {.skb = skb, .off = SEBPF_DHCP6_OPTIONS};
	__u8 type;

	if (!sebpf_udp_payload(skb, p, SEBPF_DHCP_MAX_PAYLOAD, &w.base, &w.len) ||
	    w.len < SEBPF_DHCP6_OPTIONS || bpf_skb_load_bytes(skb, w.base, &type, 1) < 0)
		return 0;
	/* SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE,
	 * INFORMATION-REQUEST */
	if (!(type == 1 || (type >= 3 && type <= 6) || type == 8 || type == 9 || type == 11))
		return 0;
	/* Each step takes at least four bytes. */
	bpf_loop(SEBPF_DHCP_MAX_PAYLOAD / 4 + 1, sebpf_dhcp6_step, &w, 0);
	return !w.bad && w.ended;
}

/*
 * 1 if the packet is a DHCP client's request to the link's servers with a
 * payload that is one (see above), else 0. Only for Ethernet interfaces:
 * the frame's source MAC is what chaddr must be.
 */
static __always_inline int sebpf_is_dhcp_request(struct __sk_buff *skb, const struct sebpf_pkt *p)
{
	if (!p->has_l4 || p->protocol != IPPROTO_UDP || p->fragment != SEBPF_FRAG_NONE)
		return 0;
	if (p->family == AF_INET)
		return p->sport == bpf_htons(68) && p->dport == bpf_htons(67) &&
		       sebpf_addr4(p->daddr) == 0xffffffff && sebpf_dhcp4_request_ok(skb, p);
	/* ff02::1:2, All_DHCP_Relay_Agents_and_Servers */
	return *(__u32 *)&p->daddr[0] == bpf_htonl(0xff020000) && *(__u32 *)&p->daddr[4] == 0 &&
	       *(__u32 *)&p->daddr[8] == 0 && *(__u32 *)&p->daddr[12] == bpf_htonl(0x00010002) &&
	       p->sport == bpf_htons(546) && p->dport == bpf_htons(547) &&
	       sebpf_dhcp6_request_ok(skb, p);
}

#endif /* SEBPF_DHCP_BPF_H */
