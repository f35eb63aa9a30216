// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The programs of the datapath. One object, one skeleton: every attachment
 * runs these same loaded programs and finds its own state by cgroup id or
 * ifindex.
 *
 *  cgroup attachments: sebpf_connect4/6, sebpf_sendmsg4/6 (socket calls;
 *                      they also report calls from outside the namespace
 *                      the attachment is served in),
 *                      sebpf_cg_out (every egress packet, the authority),
 *                      sebpf_cg_in (records inbound flows for replies)
 *                      sebpf_setsockopt, sebpf_sock_create (socket options
 *                      and raw sockets that could forge)
 *  interface attachments: sebpf_tc_guard (the guest's outgoing direction),
 *                      sebpf_tc_track (the other direction: inbound flows)
 *  the egress of every interface in a cgroup workload's network namespace:
 *                      sebpf_tc_packet_sockets (frames of packet sockets,
 *                      which no cgroup program is shown)
 *  the sockets of interface attachments' DNS endpoints:
 *                      sebpf_endpoint_filter (only what a guard let through)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sebpf_dhcp.bpf.h"
#include "sebpf_dns53.bpf.h"
#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_policy.bpf.h"
#include "sebpf_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The record a ref points at, if it is still `owner`'s (see struct
 * sebpf_att_ref): 1 and a copy in out, else 0. */
static __always_inline int sebpf_read_record(const struct sebpf_att_ref *ref, __u64 owner,
					     __u8 cgroup, struct sebpf_attachment *out)
{
	__u32 index = ref->index;
	struct sebpf_attachment *rec = bpf_map_lookup_elem(&sebpf_att_records, &index);

	if (!rec)
		return 0;
	*out = *rec;
	return out->owner == owner && !!(out->flags & SEBPF_ATT_F_CGROUP) == cgroup;
}

static __always_inline int sebpf_copy_attachment(__u64 id, struct sebpf_attachment *out)
{
	struct sebpf_att_ref *ref = bpf_map_lookup_elem(&sebpf_cg_attach, &id);

	return ref && sebpf_read_record(ref, id, 1, out);
}

static __always_inline int sebpf_interface_attachment(__u32 ifindex, struct sebpf_attachment *out)
{
	struct sebpf_att_ref *ref = bpf_map_lookup_elem(&sebpf_if_attach, &ifindex);

	return ref && sebpf_read_record(ref, ifindex, 0, out);
}

/* Nesting depth searched for an attached ancestor cgroup. */
#define SEBPF_MAX_CGROUP_DEPTH 32

/*
 * The deepest attached cgroup among a cgroup and its ancestors. The cgroup
 * itself is tried first: the common case, one lookup. Ancestors are walked
 * from the root down, so the last hit is the deepest; its id is kept (not a
 * value pointer) and looked up once more at the end.
 */
static __always_inline int sebpf_task_attachment(struct sebpf_attachment *out)
{
	__u64 deepest = 0;

	if (sebpf_copy_attachment(bpf_get_current_cgroup_id(), out))
		return 1;
	for (int level = 1; level < SEBPF_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id)
			break;
		if (bpf_map_lookup_elem(&sebpf_cg_attach, &id))
			deepest = id;
	}
	return deepest && sebpf_copy_attachment(deepest, out);
}

/* The same for the socket that owns an skb. */
static __always_inline int sebpf_skb_attachment(struct __sk_buff *skb, struct sebpf_attachment *out)
{
	__u64 deepest = 0;

	if (sebpf_copy_attachment(bpf_skb_cgroup_id(skb), out))
		return 1;
	for (int level = 1; level < SEBPF_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, level);

		if (!id)
			break;
		if (bpf_map_lookup_elem(&sebpf_cg_attach, &id))
			deepest = id;
	}
	return deepest && sebpf_copy_attachment(deepest, out);
}

static const struct sebpf_decide_opts sebpf_socket_call = {
    .hook = SEBPF_HOOK_SOCKET,
};

/* --- cgroup socket calls ------------------------------------------------ */

/* The decision for a connect() or sendmsg() whose destination address is
 * already in p. */
static __always_inline int sebpf_sock_call(struct bpf_sock_addr *ctx,
					   const struct sebpf_attachment *att, struct sebpf_pkt *p,
					   int is_sendmsg)
{
	struct sebpf_decide_opts o = sebpf_socket_call;

	p->protocol = ctx->protocol;
	p->has_l4 = 1;
	p->dport = (__u16)ctx->user_port;
	if (sebpf_netns_cookies)
		p->netns = bpf_get_netns_cookie(ctx);
	if (is_sendmsg) {
		struct bpf_sock *sk = ctx->sk;

		/* A UDP server answering with sendto() is replying. */
		if (sk)
			p->sport = bpf_htons((__u16)sk->src_port);
		o.check_reply = 1;
	}
	return sebpf_decide(att, p, o);
}

/*
 * Transparent DNS: while enforcing, a connect() or sendmsg() of a UDP or
 * TCP socket to port 53 of any address goes to the attachment's endpoint
 * instead, whatever resolver the application (or its resolv.conf) names,
 * so the domain rules apply without any configuration in the workload.
 * The original destination is kept with the socket for recvmsg and
 * getpeername. `to` is the endpoint address in the socket call's form,
 * or NULL when the endpoint has none of that family (then the query is
 * judged like any packet, and refused as deny_resolver).
 * Returns 1 when steered, 0 when not DNS, -1 to refuse (no storage).
 */
static __always_inline int sebpf_steer_dns(struct bpf_sock_addr *ctx,
					   const struct sebpf_attachment *att, const __u32 to[4],
					   int v6)
{
	struct sebpf_dns_steer *s;

	if (att->mode == SEBPF_MODE_DISABLED || !att->dns_port || !to ||
	    ctx->user_port != bpf_htons(SEBPF_DNS_PORT) ||
	    (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP))
		return 0;
	s = bpf_sk_storage_get(&sebpf_dns_steer, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return -1;
	if (v6) {
		s->orig_addr[0] = ctx->user_ip6[0];
		s->orig_addr[1] = ctx->user_ip6[1];
		s->orig_addr[2] = ctx->user_ip6[2];
		s->orig_addr[3] = ctx->user_ip6[3];
		ctx->user_ip6[0] = to[0];
		ctx->user_ip6[1] = to[1];
		ctx->user_ip6[2] = to[2];
		ctx->user_ip6[3] = to[3];
	} else {
		s->orig_addr[0] = ctx->user_ip4;
		ctx->user_ip4 = to[0];
	}
	s->to_addr[0] = to[0];
	s->to_addr[1] = to[1];
	s->to_addr[2] = to[2];
	s->to_addr[3] = to[3];
	s->orig_port = (__u16)ctx->user_port;
	s->to_port = att->dns_port;
	ctx->user_port = att->dns_port;
	sebpf_count(att->slot, SEBPF_HOOK_SOCKET, SEBPF_REASON_ALLOW_DNS_STEERED);
	return 1;
}

/* Reports a socket call of an attached cgroup's process from outside the
 * namespace its attachment is served in (see struct sebpf_netns_watch). */
static __always_inline void sebpf_watch_netns(struct bpf_sock_addr *ctx,
					      const struct sebpf_attachment *att)
{
	struct sebpf_netns_watch *w = bpf_map_lookup_elem(&sebpf_netns_watch, &att->slot);
	struct sebpf_netns_event *e;
	__u64 netns, now;

	if (!w || !w->cookie)
		return;
	netns = bpf_get_netns_cookie(ctx);
	if (netns == w->cookie)
		return;
	now = bpf_ktime_get_ns();
	if (w->reported && now - w->reported < SEBPF_NETNS_REPORT_INTERVAL_NS)
		return;
	e = bpf_ringbuf_reserve(&sebpf_netns_events, sizeof(*e), 0);
	if (!e)
		return;
	/* Racing CPUs may both report: the daemon's look is idempotent. */
	w->reported = now;
	e->cgroup = att->owner;
	e->netns = netns;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int sebpf_sock_addr4(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	struct sebpf_pkt p = {};
	struct sebpf_attachment att;
	__u32 to[4] = {};
	int steered;

	/* Only an attached cgroup runs this program; no entry means the
	 * attachment is being torn down, or the socket is used by a task of
	 * another cgroup. Fail closed. */
	if (!sebpf_task_attachment(&att))
		return 0;
	sebpf_watch_netns(ctx, &att);
	to[0] = att.dns_addr4;
	steered = sebpf_steer_dns(ctx, &att, att.dns_addr4 ? to : 0, 0);
	if (steered)
		return steered > 0;
	p.family = AF_INET;
	sebpf_set_addr4(p.daddr, ctx->user_ip4);
	return sebpf_sock_call(ctx, &att, &p, is_sendmsg);
}

static __always_inline int sebpf_sock_addr6(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	struct sebpf_pkt p = {};
	struct sebpf_attachment att;
	__u32 a[4], to[4] = {};
	int mapped, steered;

	if (!sebpf_task_attachment(&att)) /* fail closed, as above */
		return 0;
	sebpf_watch_netns(ctx, &att);
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	/* A v4-mapped destination is IPv4 on the wire: judge it by the IPv4
	 * rules, or an AF_INET6 socket would walk around them. */
	mapped = a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
	if (mapped) {
		to[2] = bpf_htonl(0x0000ffff);
		to[3] = att.dns_addr4;
		steered = sebpf_steer_dns(ctx, &att, att.dns_addr4 ? to : 0, 1);
	} else {
		__builtin_memcpy(to, att.dns_addr6, 16);
		steered =
		    sebpf_steer_dns(ctx, &att, sebpf_addr6_is_zero(att.dns_addr6) ? 0 : to, 1);
	}
	if (steered)
		return steered > 0;
	if (mapped) {
		p.family = AF_INET;
		sebpf_set_addr4(p.daddr, a[3]);
	} else {
		p.family = AF_INET6;
		sebpf_set_addr6(p.daddr, a);
	}
	return sebpf_sock_call(ctx, &att, &p, is_sendmsg);
}

/* Answers from the endpoint to a steered socket appear to come from the
 * resolver the application asked. recvmsg and getpeername programs must
 * return 1. */
static __always_inline void sebpf_unsteer(struct bpf_sock_addr *ctx, int v6)
{
	struct sebpf_dns_steer *s;

	if (!ctx->sk)
		return;
	s = bpf_sk_storage_get(&sebpf_dns_steer, ctx->sk, 0, 0);
	if (!s || !s->orig_port || ctx->user_port != s->to_port)
		return;
	if (v6) {
		if (ctx->user_ip6[0] != s->to_addr[0] || ctx->user_ip6[1] != s->to_addr[1] ||
		    ctx->user_ip6[2] != s->to_addr[2] || ctx->user_ip6[3] != s->to_addr[3])
			return;
		ctx->user_ip6[0] = s->orig_addr[0];
		ctx->user_ip6[1] = s->orig_addr[1];
		ctx->user_ip6[2] = s->orig_addr[2];
		ctx->user_ip6[3] = s->orig_addr[3];
	} else {
		if (ctx->user_ip4 != s->to_addr[0])
			return;
		ctx->user_ip4 = s->orig_addr[0];
	}
	ctx->user_port = s->orig_port;
}

SEC("cgroup/recvmsg4")
int sebpf_recvmsg4(struct bpf_sock_addr *ctx)
{
	sebpf_unsteer(ctx, 0);
	return 1;
}

SEC("cgroup/recvmsg6")
int sebpf_recvmsg6(struct bpf_sock_addr *ctx)
{
	sebpf_unsteer(ctx, 1);
	return 1;
}

SEC("cgroup/getpeername4")
int sebpf_getpeername4(struct bpf_sock_addr *ctx)
{
	sebpf_unsteer(ctx, 0);
	return 1;
}

SEC("cgroup/getpeername6")
int sebpf_getpeername6(struct bpf_sock_addr *ctx)
{
	sebpf_unsteer(ctx, 1);
	return 1;
}

SEC("cgroup/connect4")
int sebpf_connect4(struct bpf_sock_addr *ctx) { return sebpf_sock_addr4(ctx, 0); }

SEC("cgroup/connect6")
int sebpf_connect6(struct bpf_sock_addr *ctx) { return sebpf_sock_addr6(ctx, 0); }

SEC("cgroup/sendmsg4")
int sebpf_sendmsg4(struct bpf_sock_addr *ctx) { return sebpf_sock_addr4(ctx, 1); }

SEC("cgroup/sendmsg6")
int sebpf_sendmsg6(struct bpf_sock_addr *ctx) { return sebpf_sock_addr6(ctx, 1); }

/* --- cgroup socket options ---------------------------------------------- */

/* Options that let a socket send with a source address that is not its
 * host's (IP_TRANSPARENT) or write its own IP header (IP_HDRINCL): with
 * either, a workload forges packets that open reply flows for it. Refused
 * while enforcing (and when no attachment is found: fail closed). Values
 * from linux/in.h and linux/in6.h; SOL_IP and SOL_IPV6 are the IP levels. */
#define SEBPF_SOL_IP 0
#define SEBPF_SOL_IPV6 41
#define SEBPF_IP_HDRINCL 3
#define SEBPF_IP_TRANSPARENT 19
#define SEBPF_IPV6_HDRINCL 36
#define SEBPF_IPV6_TRANSPARENT 75

static __always_inline int sebpf_is_forging_option(int level, int optname)
{
	if (level == SEBPF_SOL_IP)
		return optname == SEBPF_IP_HDRINCL || optname == SEBPF_IP_TRANSPARENT;
	if (level == SEBPF_SOL_IPV6)
		return optname == SEBPF_IPV6_HDRINCL || optname == SEBPF_IPV6_TRANSPARENT;
	return 0;
}

/* Options that send frames past the interface's TC egress hook, where
 * sebpf_tc_packet_sockets judges packet sockets: PACKET_QDISC_BYPASS
 * (linux/if_packet.h) and every option of AF_XDP sockets, whose rings
 * cannot be used without one (XDP_UMEM_REG). Refused in every mode, even
 * disabled: a socket set up then would escape once the attachment
 * enforces. No workload needs them. */
#define SEBPF_SOL_PACKET 263
#define SEBPF_SOL_XDP 283
#define SEBPF_PACKET_QDISC_BYPASS 20

static __always_inline int sebpf_is_tc_bypass_option(int level, int optname)
{
	return (level == SEBPF_SOL_PACKET && optname == SEBPF_PACKET_QDISC_BYPASS) ||
	       level == SEBPF_SOL_XDP;
}

static __always_inline int sebpf_is_hdrincl(int level, int optname)
{
	return (level == SEBPF_SOL_IP && optname == SEBPF_IP_HDRINCL) ||
	       (level == SEBPF_SOL_IPV6 && optname == SEBPF_IPV6_HDRINCL);
}

SEC("cgroup/setsockopt")
int sebpf_setsockopt(struct bpf_sockopt *ctx)
{
	struct sebpf_attachment att;
	__u32 *raw;

	if (sebpf_is_tc_bypass_option(ctx->level, ctx->optname)) {
		if (sebpf_task_attachment(&att))
			sebpf_count(att.slot, SEBPF_HOOK_SOCKET, SEBPF_REASON_DENY_FORGED);
		return 0;
	}
	if (sebpf_is_forging_option(ctx->level, ctx->optname)) {
		if (!sebpf_task_attachment(&att))
			return 0;
		if (att.mode != SEBPF_MODE_DISABLED) {
			sebpf_count(att.slot, SEBPF_HOOK_SOCKET, SEBPF_REASON_DENY_FORGED);
			return 0;
		}
		/* Allowed while disabled; remembered, so that its packets are
		 * refused once the attachment enforces. */
		if (sebpf_is_hdrincl(ctx->level, ctx->optname) && ctx->sk) {
			raw = bpf_sk_storage_get(&sebpf_raw_socks, ctx->sk, 0,
						 BPF_SK_STORAGE_GET_F_CREATE);
			if (raw)
				*raw |= SEBPF_RAW_WRITES_HEADERS;
		}
	}
	/* Not ours to look at: an optval longer than a page must be handed to
	 * the kernel untouched (optlen 0), or the caller gets EFAULT. */
	if (ctx->optlen > 4096)
		ctx->optlen = 0;
	return 1;
}

/* Every raw socket an attached cgroup makes is known from its birth: its
 * IP_HDRINCL, if any, went through sebpf_setsockopt. */
SEC("cgroup/sock_create")
int sebpf_sock_create(struct bpf_sock *sk)
{
	__u32 *raw;

	if (sk->type != 3 /* SOCK_RAW */)
		return 1;
	raw = bpf_sk_storage_get(&sebpf_raw_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (raw)
		*raw |= SEBPF_RAW_SEEN;
	return 1;
}

/* --- cgroup packets ----------------------------------------------------- */

/* cgroup_skb data starts at the IP header; the version nibble says which. */
static __always_inline int sebpf_parse_cgroup_skb(struct __sk_buff *skb, struct sebpf_pkt *p)
{
	__u8 first;

	if (bpf_skb_load_bytes(skb, 0, &first, 1) < 0)
		return -1;
	if ((first >> 4) == 4)
		return sebpf_parse_ipv4(skb, 0, p);
	if ((first >> 4) == 6)
		return sebpf_parse_ipv6(skb, 0, p);
	return -1;
}

static const struct sebpf_decide_opts sebpf_packet_egress = {
    .hook = SEBPF_HOOK_PACKET,
    .check_reply = 1,
    .check_link = 1,
};

/* A raw socket that writes the whole IP header itself, source address
 * included. Sent to loopback, such a packet "arrives from" any host the
 * workload names and opens a reply flow to it; no workload needs one. That
 * is a socket of protocol IPPROTO_RAW, one that set IP_HDRINCL while the
 * attachment was disabled (sebpf_setsockopt refuses it otherwise), or one
 * made before the cgroup was attached, which may have set it unseen: fail
 * closed, such a socket must be opened again. */
static __always_inline int sebpf_from_header_writing_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	__u32 *raw;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->type != 3 /* SOCK_RAW */)
		return 0;
	if (sk->protocol == IPPROTO_RAW)
		return 1;
	raw = bpf_sk_storage_get(&sebpf_raw_socks, sk, 0, 0);
	return !raw || !(*raw & SEBPF_RAW_SEEN) || (*raw & SEBPF_RAW_WRITES_HEADERS);
}

SEC("cgroup_skb/egress")
int sebpf_cg_out(struct __sk_buff *skb)
{
	struct sebpf_attachment att;
	struct sebpf_pkt p = {};

	if (!sebpf_skb_attachment(skb, &att))
		return 0;
	if (sebpf_from_header_writing_socket(skb))
		return sebpf_decide_malformed(&att, SEBPF_REASON_DENY_FORGED);
	if (sebpf_parse_cgroup_skb(skb, &p) < 0)
		return sebpf_decide_malformed(&att, SEBPF_REASON_DENY_MALFORMED);
	if (sebpf_netns_cookies)
		p.netns = bpf_get_netns_cookie(skb);
	return sebpf_decide(&att, &p, sebpf_packet_egress);
}

SEC("cgroup_skb/ingress")
int sebpf_cg_in(struct __sk_buff *skb)
{
	struct sebpf_attachment att;
	struct sebpf_pkt p = {};

	if (sebpf_skb_attachment(skb, &att) && sebpf_parse_cgroup_skb(skb, &p) == 0) {
		if (sebpf_netns_cookies)
			p.netns = bpf_get_netns_cookie(skb);
		sebpf_track_inbound(&att, &p);
	}
	return 1; /* inbound traffic is not filtered, only remembered */
}

/* --- interfaces --------------------------------------------------------- */

#define SEBPF_ETH_HLEN 14

/* The largest frame an ARP request or reply needs: the 28-byte message in
 * a minimum-size Ethernet frame (60 bytes), with room for a VLAN tag. */
#define SEBPF_ARP_MAX_FRAME 64

/* ARP as the link needs it: Ethernet/IPv4 request or reply, and nothing
 * more in the frame. ARP is always allowed, so anything else in it (a
 * bigger frame, another protocol) would be a way to send data out. */
static __always_inline int sebpf_is_plain_arp(struct __sk_buff *skb, __u32 off)
{
	struct {
		__be16 htype;
		__be16 ptype;
		__u8 hlen;
		__u8 plen;
		__be16 oper;
	} arp;

	if (skb->len > SEBPF_ARP_MAX_FRAME)
		return 0;
	if (bpf_skb_load_bytes(skb, off, &arp, sizeof(arp)) < 0)
		return 0;
	return arp.htype == bpf_htons(1) && arp.ptype == bpf_htons(ETH_P_IP) && arp.hlen == 6 &&
	       arp.plen == 4 && (arp.oper == bpf_htons(1) || arp.oper == bpf_htons(2));
}

/* Returns 0 and fills p for IP, 1 for ARP, -1 for anything else or a
 * malformed header (reason in *deny). */
static __always_inline int sebpf_parse_tc(struct __sk_buff *skb, const struct sebpf_attachment *att,
					  struct sebpf_pkt *p, enum sebpf_reason *deny)
{
	__u32 off = (att->flags & SEBPF_ATT_F_L3_DEVICE) ? 0 : SEBPF_ETH_HLEN;
	int err;

	switch (skb->protocol) {
	case bpf_htons(ETH_P_IP):
		err = sebpf_parse_ipv4(skb, off, p);
		break;
	case bpf_htons(ETH_P_IPV6):
		err = sebpf_parse_ipv6(skb, off, p);
		break;
	case bpf_htons(ETH_P_ARP):
		if (!sebpf_is_plain_arp(skb, off)) {
			*deny = SEBPF_REASON_DENY_MALFORMED;
			return -1;
		}
		return 1;
	default:
		*deny = SEBPF_REASON_DENY_NOT_IP;
		return -1;
	}
	if (err < 0) {
		*deny = SEBPF_REASON_DENY_MALFORMED;
		return -1;
	}
	return 0;
}

/* A guest's packet to its own DNS endpoint, on the hook that carries what
 * the guest sends to the host (ingress: on egress the priority would pick
 * a queue, and the packet is not for a socket of this host). */
static __always_inline void sebpf_tag_for_endpoint(struct __sk_buff *skb,
						   const struct sebpf_attachment *att,
						   const struct sebpf_pkt *p)
{
	if (!(att->flags & SEBPF_ATT_F_GUARD_EGRESS) && sebpf_is_dns_endpoint(att, p))
		skb->priority = SEBPF_ENDPOINT_PRIORITY;
}

SEC("tc")
int sebpf_tc_guard(struct __sk_buff *skb)
{
	struct sebpf_attachment att;
	enum sebpf_reason deny = SEBPF_REASON_DENY_MALFORMED;
	struct sebpf_pkt p = {};
	int kind;

	if (!sebpf_interface_attachment(skb->ifindex, &att))
		return TC_ACT_SHOT; /* being detached: fail closed */
	kind = sebpf_parse_tc(skb, &att, &p, &deny);
	if (kind < 0)
		return sebpf_decide_malformed(&att, deny) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
	if (kind == 1) {
		/* ARP: the link cannot work without it, and it cannot leave
		 * the link. */
		sebpf_count(att.slot, SEBPF_HOOK_PACKET,
			    att.mode == SEBPF_MODE_DISABLED ? SEBPF_REASON_ALLOW_MODE_DISABLED
							    : SEBPF_REASON_ALLOW_LINK_LOCAL);
		return TC_ACT_UNSPEC;
	}
	/* The DHCP allowance needs the frame's source MAC: Ethernet only. */
	if (!(att.flags & SEBPF_ATT_F_L3_DEVICE))
		p.dhcp_request = sebpf_is_dhcp_request(skb, &p);
	sebpf_dns53_to_endpoint(skb, &att, &p);
	sebpf_tag_for_endpoint(skb, &att, &p);
	/* TC_ACT_UNSPEC, not TC_ACT_OK: let filters after ours run. */
	return sebpf_decide(&att, &p, sebpf_packet_egress) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

SEC("tc")
int sebpf_tc_track(struct __sk_buff *skb)
{
	struct sebpf_attachment att;
	enum sebpf_reason ignored;
	struct sebpf_pkt p = {};

	if (sebpf_interface_attachment(skb->ifindex, &att) &&
	    sebpf_parse_tc(skb, &att, &p, &ignored) == 0) {
		sebpf_track_inbound(&att, &p);
		sebpf_dns53_from_endpoint(skb, &att, &p);
	}
	return TC_ACT_UNSPEC;
}

/* --- packet sockets ----------------------------------------------------- */

#define SEBPF_AF_PACKET 17

/*
 * A packet socket (AF_PACKET, CAP_NET_RAW) hands the device a frame it
 * wrote whole, headers and source addresses included; no cgroup program
 * is shown it. This filter, on the egress of every interface in the
 * namespace a cgroup workload sends from, finds the socket's cgroup: a
 * frame from an attachment that enforces is dropped whatever it holds,
 * for the reason raw sockets that write their own IP header are (a forged
 * source opens reply flows). Frames of other sockets, and of packet
 * sockets outside any attachment, go on untouched.
 */
SEC("tc")
int sebpf_tc_packet_sockets(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct sebpf_attachment att;

	if (!sk || sk->family != SEBPF_AF_PACKET || !sebpf_skb_attachment(skb, &att))
		return TC_ACT_UNSPEC;
	if (att.mode == SEBPF_MODE_DISABLED) {
		sebpf_count(att.slot, SEBPF_HOOK_PACKET, SEBPF_REASON_ALLOW_MODE_DISABLED);
		return TC_ACT_UNSPEC;
	}
	sebpf_count(att.slot, SEBPF_HOOK_PACKET, SEBPF_REASON_DENY_FORGED);
	return TC_ACT_SHOT;
}

/* --- DNS endpoints of interfaces ------------------------------------------ */

/*
 * On every socket of an interface attachment's DNS endpoint
 * (SO_ATTACH_BPF): only what a guard passed to its own endpoint
 * (SEBPF_ENDPOINT_PRIORITY) is taken. The sockets are bound to the
 * interface or its bridge, so this leaves out the bridge's other guests,
 * which no program of ours sees. Returns the bytes to keep: 0 drops.
 */
SEC("socket")
int sebpf_endpoint_filter(struct __sk_buff *skb)
{
	return skb->priority == SEBPF_ENDPOINT_PRIORITY ? skb->len : 0;
}
