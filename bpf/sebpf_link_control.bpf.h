/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What a link needs whatever the rules say: neighbour and router
 * discovery, MLD, and a VM's DHCP requests within a budget.
 */
#ifndef SEBPF_LINK_CONTROL_BPF_H
#define SEBPF_LINK_CONTROL_BPF_H

#include "sebpf_addresses.bpf.h"
#include "sebpf_clock.bpf.h"
#include "sebpf_flows.bpf.h"
#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_settings.bpf.h"

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

#endif /* SEBPF_LINK_CONTROL_BPF_H */
