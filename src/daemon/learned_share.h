// How attachments share the learned-host table (datapath.max_host_rules
// hosts). A cap per attachment alone (dns.max_learned_hosts) does not keep
// one workload from denying DNS to another: eight attachments at the
// default cap fill the default table, after which every answer naming a
// new host is SERVFAIL, for every attachment, and no policy can be
// replaced (a replace holds the attachment's learned hosts twice while it
// swaps rule sets), not even to shut a workload out. So the table is
// split: each attachment whose DNS mode learns may hold an equal part of
// it, its share (never more than the cap), whatever the others do, and one
// such part is kept free for a replace. Hosts of both families count
// together against the table's size, which the kernel enforces per
// family: what fits the sum fits each.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"

namespace sebpf::daemon {

struct LearnedRoom {
  size_t table_hosts = 0;         // datapath.max_host_rules
  size_t max_per_attachment = 0;  // dns.max_learned_hosts
  size_t learners = 0;            // attachments whose DNS mode learns

  // The most each learner may hold: the table over learners + 1 (the part
  // kept free), at most the cap.
  size_t share() const;
  // The most the chains that taught a learner's hosts may take
  // (TeachingChains::text_bytes): 1 KiB per host of its share. A chain
  // is what an answer's names are, and a workload picks them (a domain of
  // its own, with wildcards and long CNAME chains, under a denylist), so
  // without a bound one could make the daemon keep gigabytes, and write
  // them to its teaching-chains file at every sweep. Real chains take
  // about 100 bytes, and most hosts have one or two.
  size_t chain_bytes() const { return share() * kChainBytesPerHost; }

  static constexpr size_t kChainBytesPerHost = 1024;
};

// What GetCounters reports of an attachment's learning.
struct LearnedCounts {
  uint64_t not_learned = 0;  // answer addresses in dns.never_learn, or the host's
  uint64_t hosts = 0;        // learned hosts held now
  uint64_t hosts_most = 0;   // the most it may hold now (0: its DNS mode learns nothing)
  uint64_t no_room = 0;      // answers refused for want of room
};

enum class LearnedRoomVerdict {
  kFits,
  kOverMax,    // past dns.max_learned_hosts
  kOverShare,  // past its share of the table
};

// Whether an attachment that holds `held` learned hosts may write
// `new_hosts` more (0: refreshes of hosts it holds). One that holds more
// than its share (the share shrank as attachments came, or the cap was
// lowered across a restart) refreshes its hosts only while the table
// still has room for what the others hold or may take and for the part
// kept free: else, having taken the room before the others came, it would
// keep it forever by asking its names again. `others_claim` is what the
// others hold or may take (each other learner the larger of its hosts and
// its share, the rest their hosts); asked only for such a refresh.
LearnedRoomVerdict judge_learned_room(const LearnedRoom& room, size_t held, size_t new_hosts,
                                      absl::FunctionRef<size_t()> others_claim);

}  // namespace sebpf::daemon
