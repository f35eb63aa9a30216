/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What a packet's ends are: loopback, the attachment's DNS endpoint or
 * another attachment's, a DNS server's port, neighbour discovery from the
 * link.
 */
#ifndef SEBPF_ADDRESSES_BPF_H
#define SEBPF_ADDRESSES_BPF_H

#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_settings.bpf.h"

#define SEBPF_DNS_PORT 53

/* Read 4 bytes at a time: an attachment's dns_addr6 is only 4-byte aligned
 * (offset 20), and the verifier refuses a misaligned read of a record
 * copied to the stack. */
static __always_inline int sebpf_addr6_is_zero(const __u8 a[16])
{
	const __u32 *w = (const __u32 *)a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline int sebpf_addr6_equal(const __u8 a[16], const __u8 b[16])
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
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

#endif /* SEBPF_ADDRESSES_BPF_H */
