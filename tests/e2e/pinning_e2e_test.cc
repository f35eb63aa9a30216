// Enforcement outlives the process that loaded it: SIGKILL the loader,
// traffic is still filtered; a new process adopts the pinned state with no
// gap, sees the same attachments and rules, and can change them.
#include <bpf/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "datapath/shared_layout.h"
#include "e2e_fixture.h"
#include "support/netns.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::Mode;
using std::chrono::milliseconds;

class PinningE2eTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pin_dir_ = "/sys/fs/bpf/sebpf-e2e-" + topo_->tag();
    std::filesystem::remove_all(pin_dir_);
    topo_->start_peer_server();
    topo_->start_host_server();
  }
  void TearDown() override {
    // Whatever happened, leave no enforcement and no pins behind.
    if (!pin_dir_.empty() && std::filesystem::exists(pin_dir_ + "/maps")) {
      if (auto dp = open_pinned(); dp.ok()) (void)(*dp)->destroy();
      std::filesystem::remove_all(pin_dir_);
    }
    E2eTest::TearDown();
  }

  // The first host the pinned learned-host table holds.
  std::optional<sebpf_learned_slot> first_learned_slot() {
    UniqueFd table(bpf_obj_get((pin_dir_ + "/maps/sebpf_learned").c_str()));
    bpf_map_info info{};
    uint32_t info_size = sizeof info;
    if (!table || bpf_obj_get_info_by_fd(table.get(), &info, &info_size) != 0) return {};
    for (uint32_t i = 0; i < info.max_entries; ++i) {
      sebpf_learned_bucket bucket{};
      if (bpf_map_lookup_elem(table.get(), &i, &bucket) != 0) return {};
      for (const sebpf_learned_slot& slot : bucket.slot) {
        if (slot.ruleset != 0) return slot;
      }
    }
    return {};
  }

  // Attaches the test cgroup (allowlist) and learns 198.51.100.2 for an
  // hour: into the learned-host table.
  Result<datapath::Attachment> attach_with_learned_host(datapath::Datapath& dp) {
    SEBPF_ASSIGN_OR_RETURN(
        auto att,
        dp.attach_cgroup(cgroup_->path(),
                         {.mode = Mode::kAllowlist, .dns = {}, .direction = {}, .rules = {}}));
    SEBPF_RETURN_IF_ERROR(dp.add_rule(
        att.key, {*net::IpPrefix::parse("198.51.100.2"), Action::kAllow,
                  datapath::BootClock::now() + std::chrono::hours(1), /*learned=*/true}));
    return att;
  }

  // Writes the table's first learned host into sebpf_host4, as a version
  // without the table kept it, allowed until `until` (or as long as in the
  // table). False if that failed.
  bool put_host_map_copy(std::optional<uint64_t> until = {}) {
    const std::optional<sebpf_learned_slot> learned = first_learned_slot();
    UniqueFd host4(bpf_obj_get((pin_dir_ + "/maps/sebpf_host4").c_str()));
    if (!learned || !host4) return false;
    sebpf_host4_key key{};
    key.ruleset = learned->ruleset;
    std::memcpy(&key.addr, learned->addr, sizeof key.addr);
    const sebpf_rule value{until.value_or(learned->until), 0, 32, SEBPF_RULE_ALLOW_LEARNED};
    return bpf_map_update_elem(host4.get(), &key, &value, BPF_NOEXIST) == 0;
  }

  static uint64_t boot_ns(datapath::BootClock::time_point t) {
    return static_cast<uint64_t>(t.time_since_epoch().count());
  }

  Result<std::unique_ptr<datapath::Datapath>> open_pinned() {
    datapath::Config config;
    config.pin_dir = pin_dir_;
    return datapath::Datapath::open(config);
  }

  // A loader process: attaches the cgroup and the veth, reports ready,
  // then waits to be killed.
  std::unique_ptr<Child> start_loader() {
    int ready[2];
    EXPECT_EQ(pipe(ready), 0);
    auto loader = std::make_unique<Child>([&, ready] {
      auto dp = open_pinned();
      if (!dp.ok()) return 1;
      auto cg = (*dp)->attach_cgroup(
          cgroup_->path(), {.mode = Mode::kAllowlist, .dns = {}, .direction = {}, .rules = {}});
      auto tc = (*dp)->attach_interface(
          topo_->host_if(), {.mode = Mode::kAllowlist, .dns = {}, .direction = {}, .rules = {}});
      if (!cg.ok() || !tc.ok()) return 2;
      if (!(*dp)->add_rule(cg->key, make_rule("198.51.100.2", Action::kAllow)).ok()) return 3;
      if (!(*dp)->add_rule(tc->key, make_rule("198.51.100.1", Action::kAllow)).ok()) return 4;
      const char byte = 'r';
      if (write(ready[1], &byte, 1) != 1) return 5;
      pause();
      return 0;
    });
    char byte = 0;
    close(ready[1]);
    EXPECT_EQ(read(ready[0], &byte, 1), 1) << "the loader did not get ready";
    close(ready[0]);
    return loader;
  }

  void expect_enforced() {
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0);
    EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
    EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
    EXPECT_EQ(
        topo_->run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); }),
        ETIMEDOUT);
  }

  std::string pin_dir_;
};

TEST_F(PinningE2eTest, SigkillOfTheLoaderLeavesEnforcementOnAndANewProcessAdoptsIt) {
  auto loader = start_loader();
  // A connection from this side into the guest, at an address the guest's
  // rules do not allow: its answers pass only as replies on the inbound
  // flow, which must outlive the loader and be adopted with the rest.
  TcpClient inbound;
  ASSERT_EQ(inbound.connect("203.0.113.2", kEchoPort), 0);
  ASSERT_EQ(inbound.echo(), 0);
  loader->kill_now();
  expect_enforced();
  EXPECT_EQ(inbound.echo(), 0) << "the guest's replies stopped with the loader";

  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  EXPECT_TRUE((*dp)->adopted());
  EXPECT_TRUE((*dp)->adoption_notes().empty());
  auto list = (*dp)->attachments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2U);
  expect_enforced();
  EXPECT_EQ(inbound.echo(), 0) << "adoption lost the inbound flow";

  // The adopted state is ours to change.
  for (const auto& a : *list) {
    auto rules = (*dp)->rules(a.key);
    ASSERT_TRUE(rules.ok());
    ASSERT_EQ(rules->size(), 1U);
    if (a.key.kind == datapath::TargetKind::kCgroup) {
      EXPECT_EQ(rules->front().prefix.to_string(), "198.51.100.2/32");
      ok((*dp)->add_rule(a.key, make_rule("198.51.100.3", Action::kAllow)));
    }
  }
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), 0);

  // destroy() ends enforcement and removes the pins.
  ok((*dp)->destroy());
  EXPECT_FALSE(std::filesystem::exists(pin_dir_));
  EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort); }), 0);
}

// Every adoption note, one per line, for a failure's message.
std::string notes_text(const datapath::Datapath& dp) {
  std::string text;
  for (const datapath::AdoptionNote& note : dp.adoption_notes()) text += note.text + "\n";
  return text;
}

// The kernel's id of a program, or of the program a pinned link runs.
uint32_t program_id(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0 ? info.id : 0;
}
uint32_t linked_program_id(const std::string& link_path) {
  UniqueFd link(bpf_obj_get(link_path.c_str()));
  bpf_link_info info{};
  uint32_t len = sizeof info;
  return link && bpf_obj_get_info_by_fd(link.get(), &info, &len) == 0 ? info.prog_id : 0;
}

// A start of the same build with the same settings finds its programs
// pinned and reuses them: nothing is loaded (nor verified) again, and the
// links and filters stay on the programs they run. A start with other
// settings (a flow timeout, which the programs hold in .rodata) loads its
// own, moves every link and filter to them, and unpins the old ones; so
// does a first start, of programs pinned without state.
TEST_F(PinningE2eTest, AStartOfTheSameBuildReusesItsProgramsAndOtherSettingsReplaceThem) {
  // Left by state removed in part: a first start unpins it.
  const std::string stale = pin_dir_ + "/progs/0123456789abcdef";
  ASSERT_TRUE(std::filesystem::create_directories(stale));
  auto loader = start_loader();
  EXPECT_FALSE(std::filesystem::exists(stale));
  std::string connect4_link;
  for (const auto& entry : std::filesystem::directory_iterator(pin_dir_ + "/links")) {
    connect4_link = entry.path().string() + "/sebpf_connect4";
  }
  const uint32_t loaded = linked_program_id(connect4_link);
  ASSERT_NE(loaded, 0u) << connect4_link;
  loader->kill_now();
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    EXPECT_TRUE((*dp)->programs_reused()) << notes_text(**dp);
    EXPECT_EQ(program_id((*dp)->program_fd(datapath::Program::kConnect4)), loaded);
    EXPECT_EQ(linked_program_id(connect4_link), loaded);
    expect_enforced();
  }
  datapath::Config other;
  other.pin_dir = pin_dir_;
  other.flow_idle_tcp = std::chrono::seconds(1234);
  auto dp = datapath::Datapath::open(other);
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  EXPECT_FALSE((*dp)->programs_reused());
  const uint32_t replaced = program_id((*dp)->program_fd(datapath::Program::kConnect4));
  EXPECT_NE(replaced, loaded);
  EXPECT_EQ(linked_program_id(connect4_link), replaced) << "the link runs the new program";
  size_t builds = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator(pin_dir_ + "/progs")) {
    ++builds;
  }
  EXPECT_EQ(builds, 1u) << "the old build's programs unpinned";
  expect_enforced();
}

// A pinned program is reused only if it fits the maps just adopted: one
// swapped by hand for a program of the same type loaded with other maps
// is not run. The start says why, loads its own, and moves the links and
// filters to them; enforcement goes on.
TEST_F(PinningE2eTest, AStartLoadsItsOwnProgramsWhenAPinnedOneUsesOtherMaps) {
  auto loader = start_loader();
  std::string connect4_link;
  for (const auto& entry : std::filesystem::directory_iterator(pin_dir_ + "/links")) {
    connect4_link = entry.path().string() + "/sebpf_connect4";
  }
  loader->kill_now();
  std::string pinned;
  for (const auto& entry : std::filesystem::directory_iterator(pin_dir_ + "/progs")) {
    pinned = entry.path().string() + "/sebpf_connect4";
  }
  ASSERT_TRUE(std::filesystem::exists(pinned)) << pinned;
  uint32_t foreign = 0;
  {
    datapath::Config unpinned;
    unpinned.pin_dir = "";  // its maps live as long as its pinned program
    auto other = datapath::Datapath::open(unpinned);
    ASSERT_TRUE(other.ok()) << other.error().message();
    const int fd = (*other)->program_fd(datapath::Program::kConnect4);
    foreign = program_id(fd);
    ASSERT_TRUE(std::filesystem::remove(pinned));
    ASSERT_EQ(bpf_obj_pin(fd, pinned.c_str()), 0) << std::strerror(errno);
  }

  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  EXPECT_FALSE((*dp)->programs_reused());
  const auto& notes = (*dp)->adoption_notes();
  EXPECT_TRUE(std::any_of(notes.begin(), notes.end(),
                          [&](const datapath::AdoptionNote& note) {
                            return note.level == datapath::AdoptionNote::Level::kWarning &&
                                   note.text.find(pinned + " not reused") != std::string::npos &&
                                   note.text.find("none of the adopted maps") != std::string::npos;
                          }))
      << "no warning names the foreign program: " << notes_text(**dp);
  const uint32_t loaded = program_id((*dp)->program_fd(datapath::Program::kConnect4));
  EXPECT_NE(loaded, foreign);
  EXPECT_EQ(linked_program_id(connect4_link), loaded) << "the link runs this start's program";
  EXPECT_EQ(program_id(UniqueFd(bpf_obj_get(pinned.c_str())).get()), loaded)
      << "this start's programs pinned in place of the foreign one";
  expect_enforced();
}

TEST_F(PinningE2eTest, AdoptionLeavesNoGap) {
  auto loader = start_loader();
  loader->kill_now();
  // A workload process that keeps trying a denied destination while new
  // processes adopt the state over and over: not one attempt may succeed.
  Child prober([&] {
    if (!cgroup_->add_self()) return 82;
    while (true) {
      if (tcp_echo("198.51.100.3", kEchoPort, milliseconds(300)) != EPERM) return 1;
    }
  });
  for (int i = 0; i < 10; ++i) {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    ASSERT_TRUE((*dp)->adopted());
  }
  // Still running means it never saw a gap.
  EXPECT_TRUE(prober.running()) << "a denied connect succeeded during adoption";
  prober.kill_now();
  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok());
  expect_enforced();
}

TEST_F(PinningE2eTest, AttachmentsWhoseTargetsVanishedAreDroppedOnAdoption) {
  auto loader = start_loader();
  loader->kill_now();
  cgroup_.reset();  // the cgroup is removed while no process holds the state
  run_command({"ip", "link", "del", topo_->host_if()});
  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  EXPECT_EQ((*dp)->adoption_notes().size(), 2U);
  auto list = (*dp)->attachments();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// An interface deleted while no process held the state, and a new one
// given its ifindex: the new interface must not inherit the old policy.
TEST_F(PinningE2eTest, AReusedIfindexDoesNotInheritThePolicy) {
  auto loader = start_loader();
  loader->kill_now();
  const unsigned ifindex = if_nametoindex(topo_->host_if().c_str());
  ASSERT_GT(ifindex, 0U);
  run_command({"ip", "link", "del", topo_->host_if()});
  const std::string other = "sebpfr" + topo_->tag();
  must_run({"ip", "link", "add", other, "index", std::to_string(ifindex), "type", "veth", "peer",
            "name", other + "p"});
  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  bool noted = false;
  for (const auto& note : (*dp)->adoption_notes()) {
    noted |= note.text.find("its ifindex now belongs to " + other) != std::string::npos;
  }
  EXPECT_TRUE(noted);
  EXPECT_EQ(run_command({"tc", "filter", "show", "dev", other, "ingress"}).output.find("sebpf"),
            std::string::npos);
  EXPECT_EQ((*dp)->attachments()->size(), 1U);  // the cgroup stays
  run_command({"ip", "link", "del", other});
}

// An interface renamed while no process held the state is still the one
// attached (the kernel keeps its qdisc and filters across a rename): it
// keeps its policy, unlike a new interface given a deleted one's ifindex.
TEST_F(PinningE2eTest, ARenamedInterfaceKeepsItsPolicy) {
  auto loader = start_loader();
  loader->kill_now();
  const std::string original = topo_->host_if();
  const std::string renamed = original + "r";
  rename_link(original, renamed);
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    for (const auto& note : (*dp)->adoption_notes()) ADD_FAILURE() << note.text;
    EXPECT_EQ((*dp)->attachments()->size(), 2U);
    EXPECT_EQ(topo_->run_in_peer([] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
    EXPECT_EQ(
        topo_->run_in_peer([] { return tcp_echo("203.0.113.1", kEchoPort, milliseconds(700)); }),
        ETIMEDOUT)
        << "the guest's policy was lost with the name";
  }
  // Its own name again, for the topology's cleanup.
  run_command({"ip", "link", "set", "dev", renamed, "down"});
  run_command({"ip", "link", "set", "dev", renamed, "name", original});
}

TEST_F(PinningE2eTest, PinnedStateOfAnotherAbiIsRefused) {
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
  }
  const std::string meta_path = pin_dir_ + "/maps/sebpf_meta";
  const int fd = bpf_obj_get(meta_path.c_str());
  ASSERT_GE(fd, 0);
  const uint32_t zero = 0;
  sebpf_meta meta{};
  ASSERT_EQ(bpf_map_lookup_elem(fd, &zero, &meta), 0);
  meta.abi_version = 999;
  ASSERT_EQ(bpf_map_update_elem(fd, &zero, &meta, BPF_ANY), 0);
  auto refused = open_pinned();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), Errc::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("ABI version 999"), std::string::npos);
  meta.abi_version = SEBPF_ABI_VERSION;
  ASSERT_EQ(bpf_map_update_elem(fd, &zero, &meta, BPF_ANY), 0);
  close(fd);
}

// Interface attachments are named by ifindex, which means something only
// in the network namespace that made them: a process elsewhere (the same
// bpffs is visible from any network namespace) must not adopt the state.
TEST_F(PinningE2eTest, PinnedStateIsAdoptedOnlyFromItsNetworkNamespace) {
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
  }
  const int elsewhere = run_in_child([&] {
    if (unshare(CLONE_NEWNET) != 0) return 90;
    auto refused = open_pinned();
    if (refused.ok()) return 91;
    if (refused.error().code() != Errc::kFailedPrecondition) return 92;
    return refused.error().message().find("network namespace") != std::string::npos ? 0 : 93;
  });
  EXPECT_EQ(elsewhere, 0);
  auto here = open_pinned();
  EXPECT_TRUE(here.ok()) << "its own namespace still adopts it";
}

TEST_F(PinningE2eTest, IncompletePinnedStateIsReported) {
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
  }
  std::filesystem::remove(pin_dir_ + "/maps/sebpf_host4");
  auto refused = open_pinned();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), Errc::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("sebpf_host4 is missing"), std::string::npos);
  std::filesystem::remove_all(pin_dir_);
}

// Pinned state that cannot be looked at (here its meta map's pin is a
// symlink to itself) is not taken for none: maps made anew beside it
// would start with nothing, and the pins would be lost.
TEST_F(PinningE2eTest, PinnedStateThatCannotBeLookedAtStopsTheStart) {
  std::filesystem::create_directories(pin_dir_ + "/maps");
  std::filesystem::create_symlink("sebpf_meta", pin_dir_ + "/maps/sebpf_meta");
  auto refused = open_pinned();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("look for the pinned state at " + pin_dir_ +
                                           "/maps/sebpf_meta"),
            std::string::npos)
      << refused.error().message();
  std::filesystem::remove_all(pin_dir_);
}

// State pinned by a build older than the DHCP budget map and the network
// namespace watch is adopted, not refused: enforcement goes on, and the
// new maps are made and pinned.
TEST_F(PinningE2eTest, StatePinnedBeforeNewerMapsExistedIsAdopted) {
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    ASSERT_TRUE(
        (*dp)
            ->attach_cgroup(cgroup_->path(),
                            {.mode = Mode::kAllowlist, .dns = {}, .direction = {}, .rules = {}})
            .ok());
  }
  const std::vector<std::string> newer = {pin_dir_ + "/maps/sebpf_dhcp_budget",
                                          pin_dir_ + "/maps/sebpf_netns_watch",
                                          pin_dir_ + "/maps/sebpf_netns_events"};
  for (const std::string& path : newer) ASSERT_TRUE(std::filesystem::remove(path)) << path;
  auto adopted = open_pinned();
  ASSERT_TRUE(adopted.ok()) << adopted.error().message();
  for (const std::string& path : newer) EXPECT_TRUE(std::filesystem::exists(path)) << path;
  auto all = (*adopted)->attachments();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1U) << "the attachment was adopted";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "enforcement went on";
}

// A map an older build pinned and these programs no longer use (the shared
// table of port 53 exchanges) is unpinned at adoption, so the kernel can
// free it, and the adoption notes say so.
TEST_F(PinningE2eTest, AMapAnOlderBuildPinnedAndNoProgramUsesIsUnpinned) {
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
  }
  const std::string path = pin_dir_ + "/maps/sebpf_dns53";
  {
    UniqueFd retired(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "sebpf_dns53", 24, 1, 16, nullptr));
    ASSERT_TRUE(retired) << std::strerror(errno);
    ASSERT_EQ(bpf_obj_pin(retired.get(), path.c_str()), 0) << std::strerror(errno);
  }
  auto adopted = open_pinned();
  ASSERT_TRUE(adopted.ok()) << adopted.error().message();
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_EQ((*adopted)->adoption_notes().size(), 1U);
  const datapath::AdoptionNote& note = (*adopted)->adoption_notes()[0];
  EXPECT_NE(note.text.find("sebpf_dns53 unpinned"), std::string::npos) << note.text;
  EXPECT_EQ(note.level, datapath::AdoptionNote::Level::kInfo) << "housekeeping, not a warning";
}

// State pinned by a version without the learned-host table holds its
// learned hosts in the host maps. Adopted, the table is made, and those
// hosts still count until they are removed.
TEST_F(PinningE2eTest, StatePinnedBeforeTheLearnedHostTableExistedKeepsItsLearnedHosts) {
  const std::string table_path = pin_dir_ + "/maps/sebpf_learned";
  {
    auto dp = open_pinned();
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    auto att = attach_with_learned_host(**dp);
    ASSERT_TRUE(att.ok()) << att.error().message();
    // Move the learned host where the old version kept it.
    ASSERT_TRUE(put_host_map_copy());
  }
  ASSERT_TRUE(std::filesystem::remove(table_path));
  auto adopted = open_pinned();
  ASSERT_TRUE(adopted.ok()) << adopted.error().message();
  EXPECT_TRUE(std::filesystem::exists(table_path));
  auto all = (*adopted)->attachments();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "the learned host in the host map still counts";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  auto rules = (*adopted)->rules((*all)[0].key);
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->size(), 1U);
  EXPECT_TRUE((*rules)[0].learned);
  ASSERT_TRUE((*adopted)->remove_rule((*all)[0].key, (*rules)[0].prefix, Action::kAllow).ok());
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), EPERM)
      << "and goes when it is removed";
}

// A host learned before the table existed and learned again since is in
// both places: the old entry in the host map expires first. The sweep
// takes that one and leaves the live one in the table.
TEST_F(PinningE2eTest, SweepingAnExpiredHostMapCopyKeepsTheHostLearnedAgainInTheTable) {
  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  const auto now = datapath::BootClock::now();
  auto att = attach_with_learned_host(**dp);
  ASSERT_TRUE(att.ok()) << att.error().message();
  auto rules = (*dp)->rules(att->key);
  ASSERT_TRUE(rules.ok() && rules->size() == 1U);
  // The old version's entry for the same host, expired a second ago.
  ASSERT_TRUE(put_host_map_copy(boot_ns(now - std::chrono::seconds(1))));

  auto swept = (*dp)->sweep();
  ASSERT_TRUE(swept.ok()) << swept.error().message();
  EXPECT_EQ(*swept, 1U);
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.2", kEchoPort); }), 0)
      << "the host learned again was swept with the expired copy";
  rules = (*dp)->rules(att->key);
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->size(), 1U);
  EXPECT_TRUE((*rules)[0].learned);
  EXPECT_GT(*(*rules)[0].expires, now);
}

// The same host in both places, both copies live: the list shows it once,
// until the later expiry (what the filter applies). A restarted daemon
// rebuilds its learned hosts from this list; with the shorter expiry it
// would write the host back cut short.
TEST_F(PinningE2eTest, AHostInBothTheHostMapAndTheTableIsListedOnceWithItsLaterExpiry) {
  auto dp = open_pinned();
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  const auto now = datapath::BootClock::now();
  auto att = attach_with_learned_host(**dp);
  ASSERT_TRUE(att.ok()) << att.error().message();
  // The old version's copy, learned earlier: ten minutes left.
  ASSERT_TRUE(put_host_map_copy(boot_ns(now + std::chrono::minutes(10))));

  auto rules = (*dp)->rules(att->key);
  ASSERT_TRUE(rules.ok()) << rules.error().message();
  ASSERT_EQ(rules->size(), 1U);
  EXPECT_TRUE((*rules)[0].learned);
  EXPECT_GT(*(*rules)[0].expires, now + std::chrono::minutes(50));
}

}  // namespace
}  // namespace sebpf::testing
