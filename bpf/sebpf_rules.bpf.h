/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Rule lookup: an attachment's CIDR rules and the hosts it learned from DNS
 * answers. Its host rule first, then a learned host, then its prefix rules,
 * longest first; an expired entry does not match, so the lookup is repeated
 * with the key limited to shorter prefixes (an LPM lookup never returns a
 * prefix longer than the key's prefixlen). Every round strictly shortens
 * the prefix, so 33 rounds (IPv4) or 129 (IPv6) are exhaustive.
 */
#ifndef SEBPF_RULES_BPF_H
#define SEBPF_RULES_BPF_H

#include "sebpf_clock.bpf.h"
#include "sebpf_maps.bpf.h"
#include "sebpf_packet.bpf.h"
#include "sebpf_settings.bpf.h"

enum sebpf_rule_match {
	SEBPF_MATCH_NONE = 0,
	SEBPF_MATCH_ALLOW = 1,
	SEBPF_MATCH_DENY = 2,
	SEBPF_MATCH_ALLOW_LEARNED = 3, /* an allow learned from DNS */
};

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

#endif /* SEBPF_RULES_BPF_H */
