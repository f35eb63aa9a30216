/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of everything the kernel programs and the C++ library
 * share: map keys and values, enums, counter layout. Both sides include this
 * file; the C++ side adds static_asserts (src/datapath/shared_layout.h) so a
 * change here that breaks the layout fails the build instead of the datapath.
 *
 * Conventions:
 *  - Addresses are kept in network byte order, exactly as they sit in packets.
 *  - IPv4 addresses that must share a key with IPv6 ones (reply flows, DNS
 *    endpoint) are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d).
 *  - Times are CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns()), so an
 *    expiry written by one daemon process stays meaningful for the next;
 *    except in the connection-tracking tables (sebpf_flow_value), which
 *    only the programs read: coarse CLOCK_MONOTONIC nanoseconds there.
 */
#ifndef SEBPF_SHARED_H
#define SEBPF_SHARED_H

#include <linux/types.h>

/* Bump when any struct below or the set of maps changes: a daemon refuses to
 * adopt pinned state written with another ABI instead of misreading it. A
 * map added alone needs no bump when a start can make it for state pinned
 * before it existed (src/datapath/pinned_state.cc, newer maps). */
#define SEBPF_ABI_VERSION 7

/* An expiry meaning "never". 0 means "no such rule". */
#define SEBPF_EXPIRY_NEVER (~0ULL)

enum sebpf_mode {
	SEBPF_MODE_DISABLED = 0,  /* no enforcement, counters only */
	SEBPF_MODE_ALLOWLIST = 1, /* default deny */
	SEBPF_MODE_DENYLIST = 2,  /* default allow */
	SEBPF_MODE_BLOCK_ALL = 3, /* deny all but the always-allowed set */
	SEBPF_MODE_COUNT = 4,
};

/*
 * skb->priority that sebpf_tc_guard gives a guest's packet to its own DNS
 * endpoint; the sockets of interface attachments' endpoints take nothing
 * else (sebpf_endpoint_filter). A guest of the same bridge that is not
 * attached has no guard, so it cannot use an attached guest's endpoint
 * (its rate limit, its learning). The priority of a received packet
 * picks no queue and is not copied to replies.
 */
#define SEBPF_ENDPOINT_PRIORITY 0x5eb0d053u

/* Flags of struct sebpf_attachment. */
enum sebpf_attachment_flags {
	/* Interface without an Ethernet header (tun, wireguard): packets
	 * start at the IP header. */
	SEBPF_ATT_F_L3_DEVICE = 1 << 0,
	/* Cgroup attachment: loopback destinations are always allowed. */
	SEBPF_ATT_F_CGROUP = 1 << 1,
	/* Interface: the guest's outgoing traffic is on the host side's TC
	 * egress hook (the default is ingress). */
	SEBPF_ATT_F_GUARD_EGRESS = 1 << 2,
};

/*
 * Per-attachment configuration, the value of the attachment maps (keyed by
 * cgroup id or by ifindex). Everything a packet decision needs besides the
 * rules themselves. Replaced as a whole (hash map update), which is what
 * makes a policy replacement atomic: mode and rule bank flip together.
 */
struct sebpf_attachment {
	__u32 slot;	    /* index into per-attachment arrays (counters) */
	__u32 serial;	    /* unique for the attachment's life, never reused */
	__u32 ruleset;	    /* rule set in use; unique, never reused */
	__u8 mode;	    /* enum sebpf_mode */
	__u8 flags;	    /* enum sebpf_attachment_flags */
	__u16 dns_port;	    /* DNS endpoint port, network order; 0 = none */
	__u32 dns_addr4;    /* DNS endpoint IPv4, network order; 0 = none */
	__u8 dns_addr6[16]; /* DNS endpoint IPv6; all zero = none */
	__u32 pad;
	__u64 owner; /* the cgroup id or ifindex this record belongs to */
};

/*
 * Value of sebpf_netns_watch, by slot: the network namespace where the
 * daemon serves a cgroup attachment's DNS endpoint and guards its packet
 * sockets, as bpf_get_netns_cookie tells it. A socket call from an
 * attached cgroup in any other namespace is reported (struct
 * sebpf_netns_event), at most once per SEBPF_NETNS_REPORT_INTERVAL_NS per
 * attachment: a process that entered a namespace of its own without the
 * cgroup's population changing raises no other event, and its DNS would
 * fail until the daemon's next sweep. The daemon rewrites the cookie, not
 * the time of the last report, so a workload that makes namespace after
 * namespace is followed once per interval at most.
 */
struct sebpf_netns_watch {
	__u64 cookie;	/* 0: not known yet; nothing is reported */
	__u64 reported; /* bpf_ktime_get_ns() of the last report */
};

/* Sent on sebpf_netns_events. */
struct sebpf_netns_event {
	__u64 cgroup; /* the attached cgroup (its id) */
	__u64 netns;  /* cookie of the namespace the call came from */
};

#define SEBPF_NETNS_REPORT_INTERVAL_NS 1000000000ULL

/*
 * Value of sebpf_cg_attach and sebpf_if_attach: which of the attachment's
 * two records in sebpf_att_records is current (index 2 * slot + half).
 *
 * Why two: the kernel may reuse a freed hash element for another key at
 * once (its BPF allocator is type-safe, not RCU-deferred), so a program
 * copying a record out of a hash while userspace replaces it could read a
 * mix of two records. Records therefore live in an array and are never
 * written while a program may read them: userspace writes the half not in
 * use, points the ref at it (one aligned 32-bit store), and writes that
 * other half again only after an RCU grace period. A ref read from a
 * reused element names another attachment's record; the owner field
 * exposes it, and the program treats the attachment as absent.
 */
struct sebpf_att_ref {
	__u32 index;
	__u32 pad;
};

/* Exact-host rules (/32, /128): O(1) hash lookups. */
struct sebpf_host4_key {
	__u32 ruleset;
	__u32 addr; /* network order */
};

struct sebpf_host6_key {
	__u32 ruleset;
	__u8 addr[16];
};

/* Prefix rules (shorter than a host): LPM tries. prefixlen counts the
 * ruleset bits too, so it is 32 + the CIDR's prefix length. */
struct sebpf_prefix4_key {
	__u32 prefixlen;
	__u32 ruleset; /* always matched in full: it leads the key */
	__u32 addr;    /* network order */
};

struct sebpf_prefix6_key {
	__u32 prefixlen;
	__u32 ruleset;
	__u8 addr[16];
};

#define SEBPF_RULESET_BITS 32

/*
 * A rule on one prefix. Allow and deny are kept apart so that "allow and
 * deny on the same prefix" can be stored as written and still evaluate to
 * deny; each side expires on its own. An entry whose both sides have expired
 * no longer matches, and the next shorter prefix decides.
 */
struct sebpf_rule {
	__u64 allow_until; /* 0 = no allow rule */
	__u64 deny_until;  /* 0 = no deny rule */
	__u32 prefixlen;   /* CIDR prefix length, so a trie hit knows its depth */
	__u32 flags;	   /* SEBPF_RULE_* */
};

/*
 * The allow side was learned from a DNS answer, not written by a user: the
 * daemon recovers its learned addresses from the maps after a restart, and
 * never lets one stand where an explicit deny would decide. A learned allow
 * does not open port 53: a workload that resolved a resolver's name must
 * still not query it directly.
 */
#define SEBPF_RULE_ALLOW_LEARNED 0x1u

/*
 * A flow, keyed from the workload's side. In SEBPF_TRACK_FLOWS, one the
 * outside opened towards the workload (an inbound TCP SYN, UDP datagram or
 * ICMP echo request): packets the workload sends back on it are replies,
 * which the allowlist default does not block. In SEBPF_TRACK_OPENED, one
 * the workload opened.
 * Ports are network order; for ICMP, local_port is the echo identifier.
 */
struct sebpf_flow_key {
	/* Cgroup attachments: the network namespace the packet was in
	 * (bpf_get_netns_cookie), so a flow planted in a namespace the
	 * workload made itself (where it may forge any packet) opens nothing
	 * in the namespace that reaches the world. 0 for interfaces, and
	 * where the kernel lacks the helper in cgroup_skb. */
	__u64 netns;
	__u32 serial;  /* of the attachment: a slot gets new tables when reused,
			* and should old ones survive a failed drop, the next
			* attachment there still inherits nothing */
	__u8 family;   /* AF_INET or AF_INET6 */
	__u8 protocol; /* IPPROTO_TCP/UDP/ICMP/ICMPV6 */
	__u16 local_port;
	__u16 remote_port;
	__u16 kind;	      /* SEBPF_TRACK_OPENED: enum sebpf_opened_kind; else 0 */
	__u8 remote_addr[16]; /* IPv4 is stored v4-mapped */
	__u32 pad2;
};

/*
 * The later fragments of a reply (SEBPF_TRACK_REPLY_FRAGS): a first
 * fragment let out as a reply on an inbound flow (it carries the ports)
 * lets the fragments of the same datagram follow, which carry no ports.
 * Addresses as in the packet.
 */
struct sebpf_frag_key {
	__u64 netns;
	__u32 serial;
	__u32 id; /* IPv4 identification or IPv6 fragment id */
	__u8 family;
	__u8 protocol;
	__u16 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 pad2;
};

/* Every connection-tracking table has this key: one size for all, so that
 * one array of maps holds them all (sebpf_maps.bpf.h). Unused bytes are 0. */
union sebpf_track_key {
	struct sebpf_flow_key flow;
	struct sebpf_frag_key frag;
};

/* An attachment's connection-tracking tables, in the order they sit in
 * sebpf_conntrack. Kernel-only contents: userspace makes, empties and
 * drops the tables, and never reads them. */
enum sebpf_track_table {
	/* Inbound flows (struct sebpf_flow_key), so that replies pass an
	 * allowlist. */
	SEBPF_TRACK_FLOWS = 0,
	/* Flows the workload opened (struct sebpf_flow_key, from the
	 * workload's side, `kind` saying under what): TCP connections to an
	 * address learned from DNS, by their SYN, and UDP flows under any
	 * allow. Only the workload's own packets write here, so the outside
	 * cannot push these entries out. */
	SEBPF_TRACK_OPENED,
	/* Later fragments of replies (struct sebpf_frag_key), for as long as
	 * the kernel keeps fragments for reassembly (30 s); and a VM's DNS
	 * exchanges on port 53 (struct sebpf_flow_key, kind
	 * SEBPF_FLOW_KIND_DNS53): short-lived entries both, so a guest that
	 * asks much pushes out none of the flows it opened (which keep
	 * connections past their address's TTL). */
	SEBPF_TRACK_REPLY_FRAGS,
	SEBPF_TRACK_TABLES,
};

/* Under what a workload opened a flow (SEBPF_TRACK_OPENED). */
enum sebpf_opened_kind {
	/* To an address a learned rule allowed: the flow outlives the
	 * address's TTL (an idle connection to a CDN is not cut when the
	 * record expires) until FIN, RST or a day idle (TCP), or 180 s idle
	 * (UDP). Only TCP and UDP. */
	SEBPF_OPENED_LEARNED = 0,
	/* A UDP flow opened under anything else (an explicit allow, the
	 * denylist default, mode disabled), or one whose learned host was
	 * taken back: it outlives nothing, but while it is in use the peer's
	 * datagrams are answers, not the outside opening a flow, so they do
	 * not make the workload's own datagrams replies. */
	SEBPF_OPENED_UDP_OTHER = 1,
};

/*
 * `kind` of a guest's DNS exchange (UDP or TCP) begun on port 53 of its
 * endpoint's address, which sebpf_tc_guard turned to the endpoint's own
 * port: keyed as the guest sent it (remote_port 53), so that sebpf_tc_track
 * gives the endpoint's answers port 53 back. Interfaces only; in the
 * attachment's own SEBPF_TRACK_REPLY_FRAGS table, so a guest that floods
 * port 53 from many ports pushes out only its own entries. Such a flow key
 * never equals a fragment key there: where a fragment key holds its family
 * (2 or 10), it holds the high byte of port 53, 0.
 */
#define SEBPF_FLOW_KIND_DNS53 2

/* What the datapath knows of a raw socket (map sebpf_raw_socks). */
enum sebpf_raw_sock {
	SEBPF_RAW_SEEN = 1,	      /* made while its cgroup was attached */
	SEBPF_RAW_WRITES_HEADERS = 2, /* set IP(V6)_HDRINCL while `disabled` */
};

/* remote_port of the entry that remembers an on-link neighbour (ICMPv6
 * ND received with hop limit 255); its local_port is 0. */
#define SEBPF_FLOW_NEIGHBOUR 0xffff

struct sebpf_flow_value {
	__u64 last_seen; /* coarse monotonic ns (bpf_ktime_get_coarse_ns()) */
};

/* Why a packet or connect was allowed or denied. */
enum sebpf_reason {
	SEBPF_REASON_ALLOW_MODE_DISABLED = 0,
	SEBPF_REASON_ALLOW_RULE,	    /* an allow rule matched */
	SEBPF_REASON_ALLOW_DEFAULT,	    /* denylist, nothing matched */
	SEBPF_REASON_ALLOW_REPLY,	    /* reply on an inbound flow */
	SEBPF_REASON_ALLOW_LOOPBACK,	    /* cgroup: loopback destination */
	SEBPF_REASON_ALLOW_DNS_ENDPOINT,    /* the attachment's DNS endpoint */
	SEBPF_REASON_ALLOW_LINK_LOCAL,	    /* ARP, ND, MLD, DHCP */
	SEBPF_REASON_ALLOW_DNS_STEERED,	    /* cgroup: DNS to any resolver, sent to the
					     * attachment's endpoint instead */
	SEBPF_REASON_ALLOW_KEPT_CONNECTION, /* a TCP connection or UDP flow
					     * opened under a learned allow,
					     * after its TTL */
	SEBPF_REASON_DENY_RULE,		    /* a deny rule matched */
	SEBPF_REASON_DENY_DEFAULT,	    /* allowlist, nothing matched */
	SEBPF_REASON_DENY_BLOCK_ALL,	    /* block_all mode */
	SEBPF_REASON_DENY_NOT_IP,	    /* TC: neither IP nor ARP */
	SEBPF_REASON_DENY_MALFORMED,	    /* truncated or invalid header */
	SEBPF_REASON_DENY_FORGED,	    /* cgroup: a socket that writes its own IP
					     * header or sends from foreign addresses,
					     * or a packet socket's frame */
	SEBPF_REASON_DENY_RESOLVER,	    /* DNS (port 53) to a resolver other than the
					     * attachment's endpoint, not explicitly allowed */
	SEBPF_REASON_COUNT,
};

#define SEBPF_FIRST_DENY_REASON SEBPF_REASON_DENY_RULE

/* Where a decision was taken: a packet (TC, cgroup_skb) or a socket call
 * (connect4/6, sendmsg4/6). */
enum sebpf_hook_kind {
	SEBPF_HOOK_PACKET = 0,
	SEBPF_HOOK_SOCKET = 1,
	SEBPF_HOOK_COUNT = 2,
};

/* Per-attachment, per-CPU counters: the value of the counters array map,
 * indexed by slot. */
struct sebpf_counters {
	__u64 count[SEBPF_HOOK_COUNT][SEBPF_REASON_COUNT];
};

/* The name an interface had when it was attached, by ifindex: lets a
 * process adopting pinned state tell its interface from a new one that was
 * given the same ifindex meanwhile. Userspace only. */
struct sebpf_ifname {
	char name[16]; /* IFNAMSIZ, NUL-terminated */
};

/*
 * Learned hosts in a table the daemon writes through mmap, without a
 * system call, and the programs search (see src/datapath/learned_table.h).
 * A (rule set, address) sits in one of two buckets, both named by
 * sebpf_learned_hash; a reader takes a slot only if it saw the same even
 * seq before and after reading it.
 */
#define SEBPF_LEARNED_WAYS 8

struct sebpf_learned_slot {
	__u32 seq;     /* odd while the daemon rewrites the slot */
	__u32 ruleset; /* 0: empty (rule set ids start at 1) */
	__u32 family;  /* AF_INET or AF_INET6 */
	__u32 reserved;
	__u64 until;   /* boot-time ns; the allow holds while now < until */
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};

struct sebpf_learned_bucket {
	struct sebpf_learned_slot slot[SEBPF_LEARNED_WAYS];
};

/* The splitmix64 finalizer: every input bit reaches every output bit. */
static inline __u64 sebpf_mix64(__u64 x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Both sides must pick the same buckets: the low half of the hash names
 * the first, the high half the second (modulo the bucket count). */
static inline __u64 sebpf_learned_hash(__u32 ruleset, __u32 family, const __u8 addr[16])
{
	__u64 lo, hi, h = ruleset; /* no casts: C++ includes this too */

	__builtin_memcpy(&lo, addr, 8);
	__builtin_memcpy(&hi, addr + 8, 8);
	h = sebpf_mix64(h << 32 | family);
	h = sebpf_mix64(h ^ lo);
	return sebpf_mix64(h ^ hi);
}

/* Written once into the meta map at first load; checked on adoption. */
struct sebpf_meta {
	__u32 abi_version;
	__u32 max_attachments;
	__u32 max_host_rules;
	__u32 max_prefix_rules;
	__u32 max_flows_per_attachment;
	/* Next attachment serial / rule set id to hand out. Ids are never
	 * reused, so rules or flows a crashed process left behind can never
	 * be mistaken for a new attachment's. */
	__u32 next_id;
	/* The network namespace (inode of its nsfs file) of the process that
	 * created the state: interface attachments are identified by ifindex,
	 * which means something only in that namespace, so only a process in
	 * it may adopt the state. Userspace only. */
	__u64 netns_ino;
};

#endif /* SEBPF_SHARED_H */
