// The datapath library: loads the eBPF programs (or adopts the ones a
// previous process pinned), attaches them to cgroups and interfaces, and
// reads and writes per-attachment policy and counters.
//
// Not thread-safe: one owner (the daemon) serializes calls.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "datapath/types.h"
#include "net/ip_prefix.h"

namespace sebpf::datapath {

class Datapath {
 public:
  // Checks privileges and kernel features, then loads the programs. When
  // config.pin_dir holds pinned state from an earlier process, that state is
  // adopted: the same maps are reused and every existing attachment is
  // switched to the new programs atomically, so enforcement never stops.
  static Result<std::unique_ptr<Datapath>> open(const Config& config);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // The configuration in force: map sizes come from the pinned state when
  // it was adopted.
  const Config& config() const;
  bool adopted() const;
  // Whether the programs were an earlier process's of the same build and
  // settings, pinned (none loaded, nor verified, again); else this process
  // loaded its own.
  bool programs_reused() const;
  // Whether reply flows of cgroup attachments are kept per network
  // namespace (needs bpf_get_netns_cookie in cgroup_skb). Without it, a
  // workload that can forge packets in a namespace of its own can open
  // replies to any address.
  bool netns_isolated_flows() const;
  // What adoption found and repaired (attachments whose cgroup or interface
  // disappeared meanwhile, half-finished attaches), one note each, with
  // its level: a warning is for the operator to look at.
  const std::vector<AdoptionNote>& adoption_notes() const;

  Result<Attachment> attach_cgroup(const std::string& path, const AttachOptions& options);
  Result<Attachment> attach_interface(const std::string& name, const AttachOptions& options);
  Status detach(const AttachmentKey& key);
  // Puts an interface attachment's TC filters back where something else
  // took one away (another program deleted the clsact qdisc or our
  // filter, put its program in our filter's place, or its filter ahead of
  // ours: the guest would go unfiltered). Returns the hooks that lacked
  // ours and what they held; empty when none did or the ifindex no longer
  // names the attached interface (its removal is the watcher's to handle).
  Result<RestoredFilters> restore_interface_filters(const AttachmentKey& key);
  // Whether a TC filter that runs the program with this id is one of ours
  // (or another superebpfd's: see ProgramOwnership), so that the event of
  // its attach needs no look. Safe from any thread.
  bool runs_our_tc_program(uint32_t program_id) const;
  // Where this datapath pins (all empty when it pins nothing): what a
  // watcher looks at for pins another program removes.
  struct PinDirs {
    std::string root, maps, links;
  };
  PinDirs pin_dirs() const;
  // Where a cgroup attachment's links are pinned (empty: nowhere).
  std::string cgroup_links_dir(uint64_t cgroup_id) const;
  // Pins again every map whose pin another program removed (an `rm` in
  // the pin directory; the maps live on in the programs that use them), so
  // that the next start adopts them instead of starting afresh. The
  // names of those pinned again.
  Result<std::vector<std::string>> restore_map_pins();
  // A cgroup's links live only in their pins, so a removed pin detaches
  // its program at once: attaches and pins again each program of the
  // cgroup attachment `key` (at `path`) whose pin is gone or whose link
  // another program detached. The names of those; none when `path` is no
  // longer that cgroup (gone or replaced: the watcher's to handle).
  Result<std::vector<std::string>> restore_cgroup_links(const AttachmentKey& key,
                                                        const std::string& path);
  // Cgroup programs are never shown the frames of packet sockets
  // (AF_PACKET: CAP_NET_RAW), so a cgroup attachment alone does not hold a
  // workload that may open one. This puts a filter on the egress of every
  // interface of the network namespace `netns_fd` (an open
  // /proc/<pid>/ns/net; -1: ours) that drops such frames when they come
  // from an attached cgroup that enforces (their headers are the
  // workload's own, so they are refused whatever they hold). Guard the
  // namespace a cgroup workload sends from, after attaching it; again
  // when interfaces are added there. Filters of ours already there are
  // replaced. unguard_packet_sockets() removes them; destroy() (and,
  // without pins, the destructor) from our namespace.
  Status guard_packet_sockets(int netns_fd);
  // The same for one (new) interface of our namespace.
  Status guard_packet_sockets_on(uint32_t ifindex);
  // While our namespace is guarded: puts the filter back on one of its
  // interfaces that lost it (as restore_interface_filters). What the
  // interface's egress hook held instead ("missing", "replaced",
  // "behind_another", "unreadable"); empty when it had ours, the
  // interface is gone, or it never had ours (it came after the namespace
  // was guarded, and is guarded now).
  Result<std::string> restore_packet_socket_filter(uint32_t ifindex);
  // An interface of our namespace was deleted or moved away: another that
  // takes its index later has not had our filter.
  void forget_interface(uint32_t ifindex);
  // Whether guard_packet_sockets(-1) has been done (and not undone by
  // unguard_packet_sockets(-1) or destroy()): our interfaces carry the
  // filter, new ones should too.
  bool guards_own_namespace() const;
  // Takes the filter off every interface of the namespace `netns_fd` (-1:
  // ours; an earlier process's filter too), and the clsact qdisc where
  // nothing else is left in it: for when no attachment needs it there any
  // more. How many interfaces had it.
  Result<size_t> unguard_packet_sockets(int netns_fd);
  Result<Attachment> attachment(const AttachmentKey& key) const;
  Result<std::vector<Attachment>> attachments() const;

  Status set_mode(const AttachmentKey& key, Mode mode);
  Status set_dns_endpoint(const AttachmentKey& key, const DnsEndpoint& dns);
  // Holds a cgroup attachment's socket hooks to the network namespace
  // whose cookie is `netns_cookie` (datapath/netns.h), the one its
  // workload is served and guarded in: a connect() or sendmsg() from any
  // other is reported on the netns_events_map() ring buffer, at most once
  // a second per attachment (a new watch does not start the second
  // again), so that the owner can follow a process that entered a
  // namespace of its own. 0 (an attachment's start) reports nothing.
  Status watch_workload_netns(const AttachmentKey& key, uint64_t netns_cookie);
  // That ring buffer (a new descriptor), for a NetnsEvents reader.
  Result<UniqueFd> netns_events_map() const;

  // Adds a rule, or gives an existing one (same prefix and action) the new
  // expiry. Rules of other actions on the same prefix stay.
  Status add_rule(const AttachmentKey& key, const Rule& rule);
  // The same for many rules. Not atomic as a whole; see replace_policy.
  Status add_rules(const AttachmentKey& key, std::span<const Rule> rules);
  // Removes the rule of one action on a prefix, or both when none is given.
  // Errc::kNotFound when there was none.
  Status remove_rule(const AttachmentKey& key, const net::IpPrefix& prefix,
                     std::optional<Action> action = std::nullopt);
  // Replaces the mode and all rules at once: each packet sees the old policy
  // or the new one, never a mix. On error the old policy stays in force.
  Status replace_policy(const AttachmentKey& key, Mode mode, std::span<const Rule> rules);
  // Ends the TCP connections and UDP flows the attachment's workload opened
  // to `hosts` under learned allows, which otherwise outlive the allow (an
  // idle connection to a CDN is not cut when its record expires): for
  // learned hosts taken back because a name that taught them is now
  // refused. Their next packet is judged like any other. Returns how many
  // ended.
  Result<size_t> forget_learned_connections(const AttachmentKey& key,
                                            std::span<const net::IpAddress> hosts);
  // Every rule of the attachment, expired ones included until swept: one
  // per prefix and action, as the filter applies them.
  Result<std::vector<Rule>> rules(const AttachmentKey& key) const;
  // rules() of every attachment, from one read of the maps (each rules()
  // call reads them all: a start that asked per attachment read them once
  // per attachment).
  Result<std::map<AttachmentKey, std::vector<Rule>>> rules_of_all() const;

  Result<Counters> counters(const AttachmentKey& key) const;

  // Reclaims map entries whose rules have all expired, entries no
  // attachment uses any more, and the connection-tracking tables of free
  // slots but a few spares. Expiry itself is enforced by the kernel at
  // packet time; this only frees memory. Returns how many map entries
  // were removed.
  Result<size_t> sweep();

  // Detaches everything and removes the pinned state: enforcement ends.
  Status destroy();

  // The socket filter for the sockets of an interface attachment's DNS
  // endpoint (SO_ATTACH_BPF; guarded on ingress): they take only what an
  // attached interface's guard passed to its own endpoint, not what another
  // guest of the same bridge sends (bpf/sebpf_shared.h,
  // SEBPF_ENDPOINT_PRIORITY). Owned by this datapath.
  int endpoint_socket_filter() const;

  // For BPF_PROG_TEST_RUN in tests and benchmarks.
  int program_fd(Program program) const;

 private:
  struct Impl;
  explicit Datapath(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sebpf::datapath
