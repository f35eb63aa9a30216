/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decision: given an attachment and a destination, allow or deny, and
 * why. Shared by every program so that a connect() and the packets of the
 * same flow are judged by one function.
 */
#ifndef SEBPF_POLICY_BPF_H
#define SEBPF_POLICY_BPF_H

#include "sebpf_addresses.bpf.h"
#include "sebpf_clock.bpf.h"
#include "sebpf_flows.bpf.h"
#include "sebpf_link_control.bpf.h"
#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_rules.bpf.h"
#include "sebpf_settings.bpf.h"

static __always_inline void sebpf_count(__u32 slot, enum sebpf_hook_kind hook,
					enum sebpf_reason reason)
{
	struct sebpf_counters *c = bpf_map_lookup_elem(&sebpf_counters, &slot);

	if (c && hook < SEBPF_HOOK_COUNT && reason < SEBPF_REASON_COUNT)
		c->count[hook][reason]++;
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
		m = sebpf_match6(att->ruleset, (const struct sebpf_addr6 *)p->daddr, &clock, dns,
				 0);
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
