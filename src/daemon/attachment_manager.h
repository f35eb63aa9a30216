// The daemon's core, free of gRPC: owns the datapath and the attachment
// records, applies policies, keeps the state file in step, and reconciles
// the two at start-up so a restart keeps ids, policies and enforcement.
//
// Defined over a file per job: attachment_manager.cc (attach, adopt at a
// start, detach, sweep, stop, the state file), attachment_policy_changes.cc,
// attachment_learning.cc (what DNS answers teach),
// attachment_dns_endpoints.cc, attachment_targets.cc (targets that come,
// go or become unsafe) and attachment_repair.cc (putting back what another
// program removed).
//
// Thread-safe: every public method takes one lock (the datapath is not
// thread-safe, and each call is short).
//
// Order of writes, so a crash at any point converges on restart (the state
// file is the truth; kernel attachments it does not know are detached):
// attach and policy changes go to the kernel first, then the state file;
// detach goes to the state file first, then the kernel.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/attachment_record.h"
#include "daemon/daemon_config.h"
#include "daemon/interface_addresses.h"
#include "daemon/learned_share.h"
#include "daemon/log_rate_limit.h"
#include "daemon/logger.h"
#include "daemon/teaching_chains_file.h"
#include "datapath/datapath.h"
#include "datapath/netns_events.h"
#include "dns/proxy.h"
#include "policy/policy_file.h"

namespace sebpf::daemon {

struct AttachSpec {
  datapath::TargetKind kind = datapath::TargetKind::kCgroup;
  std::string target;  // resolved: canonical cgroup path or interface name
  Metadata metadata;
  std::optional<Policy> policy;  // none: the policy file's selection
};

class AttachmentManager {
 public:
  // Opens (or adopts) the datapath, reads the state file and reconciles.
  // A damaged state file is an error: the daemon does not guess.
  static Result<std::unique_ptr<AttachmentManager>> open(const DaemonConfig& config,
                                                         policy::PolicyFile policies, Logger& log);
  ~AttachmentManager();

  // Called (outside the lock) with the path and id of every cgroup
  // attached from now on, so a watcher can watch it and its link pins.
  void set_cgroup_attached_hook(std::function<void(const std::string&, uint64_t)> hook);

  // The DNS endpoints: from now on every attachment's endpoint is opened
  // with it (and closed with it), and the endpoints of the attachments
  // already held are opened now. Null: no endpoints (tests of the manager
  // alone). The proxy must outlive the manager's use of it.
  void set_dns_proxy(dns::DnsProxy* proxy);

  // For the DNS proxy: the attachment's DNS mode and domain rules (null
  // when it is gone), and learning addresses from an answer. learn()
  // returns once the kernel holds them; addresses an explicit deny rule
  // decides (or that an explicit rule names exactly) are skipped. It
  // writes nothing if any name policy changed since `judged_at` (see
  // dns::ProxyBackend::learn).
  std::shared_ptr<const dns::NamePolicy> name_policy(uint64_t number) const;
  // Moves on after every change of any name policy (see ProxyBackend).
  uint64_t name_policy_generation() const {
    return name_policy_generation_.load(std::memory_order_acquire);
  }
  Result<dns::LearnOutcome> learn(uint64_t number, std::span<const dns::LearnedAddress> addresses,
                                  uint64_t judged_at);

  Result<AttachmentRecord> attach(const AttachSpec& spec);
  Status detach(uint64_t number);
  Result<AttachmentRecord> get(uint64_t number) const;
  std::vector<AttachmentRecord> list() const;
  // Records after reconciliation, for the watcher to start from.
  std::vector<std::string> cgroup_targets() const;

  Result<Policy> get_policy(uint64_t number) const;
  struct Counters {
    datapath::Counters filter;
    std::optional<dns::EndpointCounters> dns;  // none: no DNS endpoint
    LearnedCounts learned;
  };
  Result<Counters> counters(uint64_t number) const;
  Result<Policy> set_mode(uint64_t number, datapath::Mode mode);
  Result<Policy> set_dns_mode(uint64_t number, datapath::Mode mode);
  Result<Policy> add_cidr(uint64_t number, const CidrRule& rule);
  Result<Policy> remove_cidr(uint64_t number, const net::IpPrefix& prefix,
                             std::optional<datapath::Action> action);
  Result<Policy> add_domain(uint64_t number, const DomainRule& rule);
  Result<Policy> remove_domain(uint64_t number, const std::string& name,
                               std::optional<datapath::Action> action);
  Result<Policy> replace_policy(uint64_t number, const Policy& policy);

  // Target watching: detach attachments whose target is really gone. An
  // interface of our namespace that went is forgotten by the packet
  // socket filter too, so that one taking its index counts as new. One
  // moved to another namespace (`moved_away`) lost our filters with the
  // move and is out of our reach: the log warns that it goes unenforced.
  void on_interface_removed(uint32_t ifindex, bool moved_away);
  // A new interface in our namespace (it gets the packet socket filter
  // when a cgroup workload sends from this namespace), or one that changed:
  // an attached interface renamed is then reported by its new name, and
  // one enslaved to a bridge (or released) has its DNS endpoint moved.
  void on_interface_added(uint32_t ifindex);
  void on_cgroup_removed(const std::string& path);
  // A default route now goes out through this interface: an attached one
  // has become an uplink, which an attach would refuse. Logged as an
  // error naming it; it stays attached (the operator decides).
  void on_default_route(uint32_t ifindex);
  // At start: state adopted may hold what Attach refuses (a cgroup that
  // holds the daemon, found under `cgroup_mount`; an interface that holds a
  // default route): made by an older build, or a daemon started inside an
  // attached container. Each is logged like on_default_route; nothing is
  // detached (enforcement keeps no gap).
  void report_unsafe_targets(const std::string& cgroup_mount);
  // The interface half of that: after route events were lost.
  void report_uplinks();
  // The cgroup half, only if the daemon's own cgroup changed since the
  // last look (the first always looks): no kernel event says that a
  // process was moved, so the daemon looks at every sweep.
  void report_daemon_cgroup(const std::string& cgroup_mount);
  // Checks every target (after missed events: start-up, overflow).
  void check_all_targets();
  // A cgroup's endpoint and packet socket guard are made in the network
  // namespace its processes send from, looked up at the attach (and at a
  // start). That namespace can change after: a cgroup attached while empty
  // (a pod's, before its containers run) is served in ours, and a
  // container's process may join it from a namespace of its own, or enter
  // one after joining. If this attached cgroup holds a process and its
  // processes' namespace is not the one guarded, the guard is put there,
  // the endpoint moved there, and the guard let go of where no other
  // attachment needs it. An endpoint in the right namespace that lacks
  // ::1 binds it once the namespace has it. An empty cgroup changes
  // nothing. Called when its cgroup.events changes (a process came or all
  // left), when the socket hooks report a call from another namespace
  // (follow_reported_workloads), and at each sweep (a process that
  // entered a namespace after joining and makes no socket call raises no
  // event).
  void follow_workload_netns(const std::string& cgroup_path);
  // The same for every cgroup attachment, taking the lock for one at a
  // time (a look is three or four system calls).
  void follow_all_workload_netns();
  // The socket hooks' reports of calls from outside an attachment's
  // namespace (see Datapath::watch_workload_netns), for the watcher's
  // thread to read; follow_reported_workloads reads them.
  Result<std::unique_ptr<datapath::NetnsEvents>> open_netns_events() const;
  // Follows the workload of each cgroup attachment reported there (the
  // cgroups' ids).
  void follow_reported_workloads(const std::set<uint64_t>& cgroup_ids);
  // A clsact qdisc or a TC filter was deleted on this interface, or a
  // filter that runs another's program added or put in place of one: if
  // one of ours (an attached interface's, or the packet socket filter of
  // our namespace) is gone or runs another's program, it is put back and
  // that logged as an error.
  void on_tc_filters_changed(uint32_t ifindex);
  // Whether a TC filter that runs this program is ours: the events of our
  // own attaches need no look. Takes no lock.
  bool runs_our_tc_program(uint32_t program_id) const {
    return dp_->runs_our_tc_program(program_id);
  }
  // The same for every attached interface and every interface of our
  // namespace (after TC events were lost).
  void restore_all_tc_filters();
  // What the watcher watches for pins another program removes: the pin
  // directory, its maps and links directories, and each cgroup
  // attachment's links directory (by cgroup id). All empty when the
  // datapath pins nothing.
  struct PinnedDirs {
    datapath::Datapath::PinDirs top;
    std::map<uint64_t, std::string> cgroup_links;
  };
  PinnedDirs pinned_dirs() const;
  std::string cgroup_links_dir(uint64_t cgroup_id) const {
    return dp_->cgroup_links_dir(cgroup_id);
  }
  // A map's pin was removed: pinned again, so that the next start adopts
  // the state. Logged as an error naming the maps.
  void on_map_pins_removed();
  // A link pin of this cgroup was removed, which detached its program:
  // attached and pinned again at once, logged as an error naming the
  // attachment and the programs. Nothing for a cgroup not attached (a
  // detach of ours removes its pins too).
  void on_link_pins_removed(uint64_t cgroup_id);
  // Both, for the maps and every cgroup attachment (after events were
  // lost, or the directory holding them was removed, and at each sweep:
  // no event tells of a link another program detached or swapped for a
  // program of its own, which keeps its pin; restore_links_locked puts
  // those back too).
  void restore_all_pins();
  // The files kept in the state directory, which the watcher watches: the
  // state file and the learned chains file.
  std::vector<std::string> state_files() const {
    return {config_.state_file(), config_.learned_chains_file()};
  }
  // One of them (or their directory) was removed: each missing is written
  // again at once from what this process holds, logged as an error.
  // Without the state file, the next start would find every attachment
  // unrecorded and detach it; without the chains file, the first domain
  // rule change that may refuse a name would drop every learned host.
  void restore_state_files();
  // This host's addresses may have changed (or events were lost): reads
  // them again. DNS never opens one, and learned hosts that became one are
  // dropped.
  void on_host_addresses_changed();

  // Drops expired rules from records and kernel maps.
  void sweep();
  // On a clean stop: detach everything, or leave enforcement in the kernel.
  Status shutdown(bool detach_all);

 private:
  AttachmentManager(const DaemonConfig& config, policy::PolicyFile policies, Logger& log,
                    std::unique_ptr<datapath::Datapath> dp);

  using KernelChange = std::function<Status(datapath::Datapath&, const datapath::AttachmentKey&,
                                            const Policy& updated)>;
  Result<Policy> change_policy(uint64_t number, const std::function<Status(Policy&)>& edit,
                               const KernelChange& kernel);

  Status reconcile();
  void restore_tc_filters_locked(uint32_t ifindex);
  void restore_map_pins_locked();
  void restore_links_locked(const AttachmentRecord& record);
  // `policy` is the one the new record holds: attach() resolves the policy
  // file's selection, and an attach again after a reboot keeps the record's.
  Result<AttachmentRecord> attach_locked(const AttachSpec& spec, const Policy& policy,
                                         uint64_t number, WallClock::time_point created,
                                         const std::string& applied_policy,
                                         std::optional<datapath::DnsEndpoint> dns);
  // What the kernel enforces for an attachment, as a start reads it.
  struct HeldPolicy {
    datapath::Mode mode;
    std::vector<datapath::Rule> rules;
  };
  // The record's policy, with the hosts it learned, in the kernel: one
  // atomic swap, which waits for a grace period. None when `held` is that
  // policy already (a start after a clean stop: a grace period each made a
  // start with 1,024 attachments take 13 s).
  Status apply_full_policy(const AttachmentRecord& record,
                           const std::optional<HeldPolicy>& held = std::nullopt);
  Status save_locked();
  void restore_state_file_locked();
  // For changes that stand whether or not they are written (the kernel
  // holds them already): a failed write is logged, and the next save
  // writes them.
  void save_or_log_locked();
  AttachmentRecord* find_locked(uint64_t number);
  // The NotFound error for an attachment no record holds. One the daemon
  // detached itself (its target went away) is named with why, so that
  // whoever asks for it after learns it was not their call that ended it.
  Error no_attachment_locked(uint64_t number) const;
  Result<uint16_t> allocate_dns_port_locked();
  void drop_locked(size_t index, const std::string& reason);
  // The network namespace a cgroup's workload sends from when it is not
  // ours (an open /proc/<pid>/ns/net of one of its processes); invalid for
  // ours, for a cgroup with no process yet, and for interfaces. An error
  // when it cannot be told (netns_of_cgroup).
  static Result<UniqueFd> workload_netns(const AttachmentRecord& record);
  // follow_workload_netns's work, for one record.
  void follow_workload_netns_locked(AttachmentRecord& record);
  // Whether the cgroup's endpoint lacks its IPv6 address (skipped as it
  // was made: ::1 in a namespace whose loopback was still down, or whose
  // IPv6 was off). A look binds it once the workload's namespace lists it
  // (read through /proc/<thread>/net). IPv4 is not looked for: a loopback
  // address binds whatever the loopback's state.
  bool endpoint_lacks_ipv6_locked(const AttachmentRecord& record) const;
  // The endpoint's sockets are made in `netns_fd` (-1: ours).
  enum class EndpointChange { kOpen, kMove };
  Status open_dns_endpoint_locked(const AttachmentRecord& record, int netns_fd,
                                  EndpointChange change = EndpointChange::kOpen);
  // Puts the packet socket filter on the interfaces of the cgroup
  // workload's namespace `netns_fd` (-1: ours), records which one in
  // record.guarded_netns, and has the socket hooks report calls from
  // any other.
  Status guard_packet_sockets_locked(AttachmentRecord& record, int netns_fd);
  // Where a cgroup attachment's packet socket guard was: its namespace
  // (nsfs inode; 0: never guarded) and the cgroup through whose processes
  // it is reached when it is not ours.
  struct GuardLeft {
    uint64_t netns = 0;
    std::string cgroup;
  };
  // Takes the packet socket filter off a network namespace where no cgroup
  // attachment needs it any more: the one `left` names (a workload's is
  // reached through a process of its cgroup still there; with none, the
  // namespace takes the filters with it when it goes), or, with null at
  // start, ours, whatever an earlier process left there.
  void release_packet_socket_guard_locked(const GuardLeft* left);
  // Forgets what belongs to an attachment that is gone: endpoint, learned
  // hosts, views of its policy, and the packet socket filter where it was
  // the last to need it.
  void forget_locked(const AttachmentRecord& gone);
  // Drops the views built from an attachment's policy (name policy,
  // learnable index); they are rebuilt on next use.
  void policy_changed_locked(uint64_t number);
  const LearnableIndex& learnable_index_locked(const AttachmentRecord& record);
  // Drops learned hosts that the policy no longer lets stand (or that
  // expired) and removes their kernel rules.
  void prune_learned_locked(const AttachmentRecord& record);
  // Whether the attachment, holding `hosts` (its learned_ entry), may write
  // `rules` (learned hosts) and stay within dns.max_learned_hosts and its
  // share of the table (learned_share.h), after dropping its expired hosts
  // if need be; kResourceExhausted if not.
  Status make_room_locked(const AttachmentRecord& record, const LearnedHosts& hosts,
                          std::span<const datapath::Rule> rules);
  LearnedRoom learned_room_locked() const;
  // Whether the chains of `taught` that are new fit what the attachment's
  // `chains` may take (LearnedRoom::chain_bytes), after letting go of those
  // none of its `hosts` names if need be; kResourceExhausted if not.
  Status make_chain_room_locked(const AttachmentRecord& record, const LearnedHosts& hosts,
                                TeachingChains& chains,
                                std::span<const dns::LearnedAddress* const> taught);
  // What the attachments but `number` hold or are sure of (learned_share.h).
  size_t others_learned_claim_locked(uint64_t number, size_t share) const;
  // Logs (rate-limited) an answer's address that dns.never_learn or the
  // host's addresses kept out.
  void report_never_learned(const AttachmentRecord& record, const net::IpAddress& address);
  // never_learn_ from the configured ranges and the host's addresses
  // (sorted); drops learned hosts it now covers. False (and nothing done)
  // if no address outside the configured ranges came or went.
  bool set_host_addresses_locked(const std::vector<net::IpAddress>& host_addresses);
  // A VM's endpoint is on the host side of its interface, whose addresses
  // may come after the attach (an orchestrator that attaches a tap before
  // addressing it) or change: the endpoint's sockets, the kernel's record
  // of it (the one DNS server the guest may ask) and the state follow them.
  void follow_interface_addresses_locked(const InterfaceAddresses& addresses);
  // An interface keeps its ifindex, and with it our filters, across a
  // rename: the record takes the new name, so List reports it, Attach by
  // that name finds it, and the uplink check (by name) looks at the right
  // interface. True if the name changed (the state is then to be saved).
  bool follow_interface_name_locked(AttachmentRecord& record);
  // An interface enslaved to a bridge, or released from one, after the
  // attach: its endpoint moves to the addresses of its new dns_device.
  // True if it moved (the state is then to be saved).
  bool follow_dns_device_locked(AttachmentRecord& record);
  void move_dns_endpoint_locked(AttachmentRecord& record, const datapath::DnsEndpoint& to);
  // Drops the learned hosts that only answers the policy now refuses
  // taught (a domain deny added, an allow removed, DNS mode block_all).
  void revoke_refused_locked(const AttachmentRecord& record);
  // Reads what the last daemon wrote of what taught the learned hosts (at
  // start, once learned_ holds what the kernel kept). The file stays: it
  // is safe to read again, as only hosts the kernel holds until the instant
  // it recorded take its chains.
  void restore_teachers_locked();
  // Writes what taught the learned hosts (teaching_chains_file.h). Copied
  // with `lock` held, encoded and written after it is released: for 100k
  // hosts the copy takes 5 ms, the encoding 45 ms (6.8 MB), which learn()
  // and so the DNS answers would otherwise wait.
  void save_teachers(std::unique_lock<std::mutex>& lock);
  // Takes dropped learned hosts out of the kernel (but not the user's own
  // rule for such a host).
  void remove_learned_rules_locked(const AttachmentRecord& record,
                                   std::span<const net::IpAddress> dropped);

  DaemonConfig config_;
  const NeverLearnRanges configured_never_learn_;  // config_.dns_never_learn
  // The host's addresses outside configured_never_learn_ (most are inside:
  // link-local, loopback, private), sorted.
  std::vector<net::IpAddress> host_addresses_;
  // Both together: what learn() checks.
  NeverLearnRanges never_learn_;
  LogRateLimit never_learned_log_{kWorkloadLinesPerSource, kWorkloadLinesOverall};
  policy::PolicyFile policies_;
  // The attachment_target_unsafe error line.
  void log_unsafe_target(const AttachmentRecord& r, const Error& why);
  // An endpoint not opened or moved: an error, unless its device is gone.
  void log_endpoint_failure_locked(const AttachmentRecord& record, const Error& why);

  Logger& log_;
  mutable std::mutex mu_;
  std::unique_ptr<datapath::Datapath> dp_;
  DaemonStateData state_;
  std::function<void(const std::string&, uint64_t)> cgroup_hook_;
  dns::DnsProxy* dns_proxy_ = nullptr;
  std::map<uint64_t, LearnedHosts> learned_;
  // How many attachments learn from answers (their DNS mode); counted
  // again after an attach or a policy change, not per answer.
  mutable std::optional<size_t> learners_;
  // What learn() keeps of each attachment besides its hosts and what
  // taught them.
  struct LearnBookkeeping {
    uint64_t not_learned = 0;  // answer addresses never_learn_ kept out
    uint64_t no_room = 0;      // answers refused for want of room
    // Walks done when it had no room, each at most once a second: its
    // expired hosts dropped (make_room_locked), its chains compacted
    // (make_chain_room_locked), the others' claim taken (make_room_locked).
    std::optional<datapath::BootClock::time_point> pruned, chains_compacted, claim_taken;
    size_t others_claim = 0;
  };
  std::map<uint64_t, LearnBookkeeping> bookkeeping_;
  // What taught each attachment's learned hosts: since this process
  // started, and what the last daemon left if it stopped cleanly
  // (restore_teachers_locked). Other hosts read back from the kernel at
  // start have no record.
  TeachersByAttachment teachers_;
  // Hosts were taught or written since teachers_ was last saved.
  bool teachers_changed_ = false;
  std::map<uint64_t, LearnableIndex> learnable_indexes_;
  // The daemon's cgroup when report_daemon_cgroup last looked.
  std::optional<std::string> own_cgroup_seen_;
  // The DNS proxy's view of each policy, built on first use. A lock of its
  // own: the proxy reads it for every query and should not wait on mu_,
  // which learn() and policy changes hold across kernel writes. Changed
  // only with mu_ held too (lock order: mu_, then name_policies_mu_).
  mutable std::mutex name_policies_mu_;
  mutable std::map<uint64_t, std::shared_ptr<const dns::NamePolicy>> name_policies_;
  std::atomic<uint64_t> name_policy_generation_{0};
  // Ports are handed out round-robin, so a port just given up is not
  // handed out again while its sockets may still be closing.
  uint32_t next_dns_port_ = 0;
};

}  // namespace sebpf::daemon
