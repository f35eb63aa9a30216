// The library's answers to bad input and full tables, with a real kernel:
// each is a clear error, and a failed call changes nothing.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <map>
#include <string_view>

#include "common/unique_fd.h"
#include "e2e_fixture.h"
#include "support/process.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::AttachmentKey;
using datapath::Mode;
using datapath::TargetKind;

class DatapathApiTest : public E2eTest {
 protected:
  void open_with(datapath::Config config) {
    config.pin_dir = "";
    auto dp = datapath::Datapath::open(config);
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    dp_ = std::move(*dp);
  }

  // Programs the kernel has on a cgroup, as bpftool lists them.
  std::string programs_on(const std::string& cgroup) {
    return run_command({"bpftool", "cgroup", "show", cgroup}).output;
  }

  // sebpf_conntrack, as the egress program on the cgroup holds it; closed
  // if there is none.
  static UniqueFd conntrack_map_of(const std::string& cgroup) {
    UniqueFd dir(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    __u32 prog_id = 0;
    __u32 count = 1;
    if (!dir ||
        bpf_prog_query(dir.get(), BPF_CGROUP_INET_EGRESS, 0, nullptr, &prog_id, &count) != 0 ||
        count != 1) {
      return UniqueFd();
    }
    UniqueFd prog(bpf_prog_get_fd_by_id(prog_id));
    std::array<__u32, 64> map_ids{};
    bpf_prog_info info{};
    info.nr_map_ids = map_ids.size();
    info.map_ids = reinterpret_cast<__u64>(map_ids.data());
    __u32 info_len = sizeof(info);
    if (!prog || bpf_obj_get_info_by_fd(prog.get(), &info, &info_len) != 0) return UniqueFd();
    for (__u32 i = 0; i < std::min<__u32>(info.nr_map_ids, map_ids.size()); ++i) {
      UniqueFd map(bpf_map_get_fd_by_id(map_ids[i]));
      bpf_map_info map_info{};
      __u32 map_info_len = sizeof(map_info);
      if (map && bpf_obj_get_info_by_fd(map.get(), &map_info, &map_info_len) == 0 &&
          std::string_view(map_info.name) == "sebpf_conntrack") {
        return map;
      }
    }
    return UniqueFd();
  }

  // The ids of a slot's tables in sebpf_conntrack (0: none).
  static std::array<uint32_t, SEBPF_TRACK_TABLES> tables_of(int conntrack, uint32_t slot) {
    std::array<uint32_t, SEBPF_TRACK_TABLES> ids{};
    for (uint32_t t = 0; t < SEBPF_TRACK_TABLES; ++t) {
      const uint32_t index = slot * SEBPF_TRACK_TABLES + t;
      if (bpf_map_lookup_elem(conntrack, &index, &ids[t]) != 0) ids[t] = 0;
    }
    return ids;
  }
};

TEST_F(DatapathApiTest, AttachErrorsNameTheProblem) {
  open_private();
  auto missing = dp_->attach_cgroup(cgroup_->path() + "-nope", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Errc::kNotFound);
  EXPECT_NE(missing.error().message().find("does not exist"), std::string::npos);

  auto not_cgroup = dp_->attach_cgroup("/tmp", {});
  ASSERT_FALSE(not_cgroup.ok());
  EXPECT_EQ(not_cgroup.error().code(), Errc::kInvalidArgument);

  auto no_iface = dp_->attach_interface("sebpfnone0", {});
  ASSERT_FALSE(no_iface.ok());
  EXPECT_EQ(no_iface.error().code(), Errc::kNotFound);

  datapath::AttachOptions port_only;
  port_only.dns.port = 53;
  auto bad_dns = dp_->attach_cgroup(cgroup_->path(), port_only);
  ASSERT_FALSE(bad_dns.ok());
  EXPECT_EQ(bad_dns.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(programs_on(cgroup_->path()).find("sebpf"), std::string::npos);

  ASSERT_TRUE(dp_->attach_cgroup(cgroup_->path(), {}).ok());
  auto twice = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code(), Errc::kAlreadyExists);
  ASSERT_TRUE(dp_->attach_interface(topo_->host_if(), {}).ok());
  EXPECT_EQ(dp_->attach_interface(topo_->host_if(), {}).error().code(), Errc::kAlreadyExists);
}

// Root without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (a container's
// root, say) is told which capabilities it lacks.
TEST_F(DatapathApiTest, MissingCapabilitiesAreNamed) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const int rc = run_in_child([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capget, &header, data) != 0) return 10;
    for (int cap : {CAP_SYS_ADMIN, CAP_NET_ADMIN, 39 /* CAP_BPF */}) {
      data[cap / 32].effective &= ~(1U << (cap % 32));
    }
    if (syscall(SYS_capset, &header, data) != 0) return 11;
    datapath::Config config;
    config.pin_dir = "";
    auto dp = datapath::Datapath::open(config);
    if (dp.ok()) return 12;
    const std::string& msg = dp.error().message();
    if (write(out[1], msg.data(), msg.size()) < 0) return 13;
    return dp.error().code() == Errc::kPermissionDenied ? 0 : 14;
  });
  close(out[1]);
  char buf[512] = {};
  const ssize_t n = read(out[0], buf, sizeof(buf) - 1);
  close(out[0]);
  EXPECT_EQ(rc, 0);
  const std::string msg(buf, n > 0 ? static_cast<size_t>(n) : 0);
  EXPECT_NE(msg.find("CAP_BPF and CAP_NET_ADMIN"), std::string::npos) << msg;
}

TEST_F(DatapathApiTest, UnknownAttachmentIsNotFoundEverywhere) {
  open_private();
  const AttachmentKey nobody{TargetKind::kCgroup, 12345678};
  const auto prefix = *net::IpPrefix::parse("198.51.100.0/24");
  EXPECT_EQ(dp_->detach(nobody).error().code(), Errc::kNotFound);
  EXPECT_EQ(dp_->set_mode(nobody, Mode::kDenylist).error().code(), Errc::kNotFound);
  EXPECT_EQ(dp_->add_rule(nobody, make_rule("198.51.100.0/24", Action::kAllow)).error().code(),
            Errc::kNotFound);
  EXPECT_EQ(dp_->remove_rule(nobody, prefix).error().code(), Errc::kNotFound);
  EXPECT_EQ(dp_->rules(nobody).error().code(), Errc::kNotFound);
  EXPECT_EQ(dp_->counters(nobody).error().code(), Errc::kNotFound);
  EXPECT_EQ(dp_->replace_policy(nobody, Mode::kAllowlist, {}).error().code(), Errc::kNotFound);
}

TEST_F(DatapathApiTest, RemovingARuleThatIsNotThereIsNotFound) {
  open_private();
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_TRUE(att.ok());
  ok(dp_->add_rule(att->key, make_rule("198.51.100.0/24", Action::kAllow)));
  const auto prefix = *net::IpPrefix::parse("198.51.100.0/24");
  EXPECT_EQ(dp_->remove_rule(att->key, prefix, Action::kDeny).error().code(), Errc::kNotFound);
  ok(dp_->remove_rule(att->key, prefix, Action::kAllow));
  EXPECT_EQ(dp_->remove_rule(att->key, prefix).error().code(), Errc::kNotFound);
  EXPECT_TRUE(dp_->rules(att->key)->empty());
}

TEST_F(DatapathApiTest, FullRuleTableIsReportedAndAFailedReplaceKeepsTheOldPolicy) {
  datapath::Config config;
  config.max_host_rules = 8;
  config.max_prefix_rules = 4;
  open_with(config);
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_TRUE(att.ok());
  std::vector<datapath::Rule> few, many;
  for (int i = 1; i <= 3; ++i)
    few.push_back(make_rule("192.0.2." + std::to_string(i), Action::kAllow));
  for (int i = 1; i <= 20; ++i)
    many.push_back(make_rule("198.51.100." + std::to_string(i), Action::kAllow));
  ok(dp_->replace_policy(att->key, Mode::kAllowlist, few));
  auto full = dp_->replace_policy(att->key, Mode::kDenylist, many);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(full.error().message().find("max_host_rules"), std::string::npos);
  EXPECT_NE(full.error().message().find("old policy kept"), std::string::npos);
  auto rules = dp_->rules(att->key);
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(*rules, few);
  EXPECT_EQ(dp_->attachment(att->key)->mode, Mode::kAllowlist);

  std::vector<datapath::Rule> prefixes;
  for (int i = 0; i < 5; ++i)
    prefixes.push_back(make_rule("10." + std::to_string(i) + ".0.0/16", Action::kDeny));
  auto prefix_full = dp_->add_rules(att->key, prefixes);
  ASSERT_FALSE(prefix_full.ok());
  EXPECT_NE(prefix_full.error().message().find("max_prefix_rules"), std::string::npos);
}

TEST_F(DatapathApiTest, AllSlotsTakenIsReportedAndLeavesNothingAttached) {
  datapath::Config config;
  config.max_attachments = 1;
  open_with(config);
  ASSERT_TRUE(dp_->attach_interface(topo_->host_if(), {}).ok());
  auto second = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), Errc::kResourceExhausted);
  EXPECT_EQ(programs_on(cgroup_->path()).find("sebpf"), std::string::npos);
  EXPECT_EQ(dp_->attachments()->size(), 1U);
}

// Each attachment's connection-tracking tables are made when it attaches:
// if the kernel cannot make them, the attach fails whole.
TEST_F(DatapathApiTest, TablesTooLargeToMakeFailTheAttachAndLeaveNothing) {
  datapath::Config config;
  config.max_flows_per_attachment = 1U << 31;
  open_with(config);
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_FALSE(att.ok());
  EXPECT_EQ(att.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(att.error().message().find("lower max_flows_per_attachment"), std::string::npos)
      << att.error().message();
  EXPECT_EQ(programs_on(cgroup_->path()).find("sebpf"), std::string::npos);
  EXPECT_TRUE(dp_->attachments()->empty());
}

// Ids are never reused: when the 32-bit id space is used up, attaching is
// refused rather than handing out an id that rules or flows still carry.
TEST_F(DatapathApiTest, ExhaustedIdsAreRefusedNotWrapped) {
  const std::string pin_dir = "/sys/fs/bpf/sebpf-ids-" + topo_->tag();
  struct RemovePins {
    std::string dir;
    ~RemovePins() { std::filesystem::remove_all(dir); }
  } remove_pins{pin_dir};
  datapath::Config config;
  config.pin_dir = pin_dir;
  auto dp = datapath::Datapath::open(config);
  ASSERT_TRUE(dp.ok()) << dp.error().message();
  {
    UniqueFd meta(bpf_obj_get((pin_dir + "/maps/sebpf_meta").c_str()));
    ASSERT_TRUE(meta.valid());
    const uint32_t zero = 0;
    sebpf_meta value{};
    ASSERT_EQ(bpf_map_lookup_elem(meta.get(), &zero, &value), 0);
    value.next_id = UINT32_MAX - 1;  // one id left; attaching needs two
    ASSERT_EQ(bpf_map_update_elem(meta.get(), &zero, &value, BPF_ANY), 0);
  }
  auto att = (*dp)->attach_cgroup(cgroup_->path(), {});
  ASSERT_FALSE(att.ok());
  EXPECT_EQ(att.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(att.error().message().find("32-bit ids"), std::string::npos);
  EXPECT_EQ(programs_on(cgroup_->path()).find("sebpf"), std::string::npos);
  EXPECT_TRUE((*dp)->destroy().ok());
}

// The default sizes hold 1,024 attachments; the next one is refused clearly.
TEST_F(DatapathApiTest, DefaultSizesHold1024Attachments) {
  open_private();
  ASSERT_EQ(dp_->config().max_attachments, 1024U);
  std::vector<std::unique_ptr<TestCgroup>> cgroups;
  for (int i = 0; i < 1025; ++i) {
    cgroups.push_back(
        std::make_unique<TestCgroup>("sebpf-e2e-" + topo_->tag() + "/c" + std::to_string(i)));
  }
  for (int i = 0; i < 1024; ++i) {
    auto att = dp_->attach_cgroup(cgroups[static_cast<size_t>(i)]->path(), {});
    ASSERT_TRUE(att.ok()) << i << ": " << att.error().message();
  }
  auto over = dp_->attach_cgroup(cgroups.back()->path(), {});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), Errc::kResourceExhausted);
  EXPECT_NE(over.error().message().find("max_attachments"), std::string::npos);
  EXPECT_EQ(dp_->attachments()->size(), 1024U);
  dp_.reset();  // detaches all 1,024 before the cgroups go
}

TEST_F(DatapathApiTest, ManyRulesInABatchAndBack) {
  open_private();
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_TRUE(att.ok());
  std::vector<datapath::Rule> rules;
  for (int i = 0; i < 5000; ++i) {
    rules.push_back(make_rule("2001:db8::" + std::to_string(i), Action::kAllow));
  }
  ok(dp_->add_rules(att->key, rules));
  auto listed = dp_->rules(att->key);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), rules.size());
}

// A start reads every attachment's rules at once: each gets its own, as
// rules() gives them, learned hosts (in the learned-host table) included.
TEST_F(DatapathApiTest, TheRulesOfAllAreEachAttachmentsOwn) {
  open_private();
  auto cg = dp_->attach_cgroup(cgroup_->path(), {});
  auto tc = dp_->attach_interface(topo_->host_if(), {});
  ASSERT_TRUE(cg.ok() && tc.ok());
  const std::vector<datapath::Rule> explicit_rules = {make_rule("198.51.100.0/24", Action::kAllow),
                                                      make_rule("2001:db8::1", Action::kDeny)};
  ok(dp_->add_rules(cg->key, explicit_rules));
  ok(dp_->add_rule(cg->key, {*net::IpPrefix::parse("203.0.113.9"), Action::kAllow,
                             datapath::BootClock::now() + std::chrono::hours(1),
                             /*learned=*/true}));
  ok(dp_->add_rule(tc->key, make_rule("192.0.2.0/28", Action::kDeny)));
  auto all = dp_->rules_of_all();
  ASSERT_TRUE(all.ok()) << all.error().message();
  ASSERT_EQ(all->size(), 2u);
  for (const datapath::AttachmentKey& key : {cg->key, tc->key}) {
    auto one = dp_->rules(key);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(all->at(key), *one) << datapath::to_string(key);
  }
  EXPECT_EQ(all->at(cg->key).size(), 3u);
  EXPECT_EQ(all->at(tc->key).size(), 1u);
}

TEST_F(DatapathApiTest, SweepReclaimsExpiredAndOrphanedEntriesOnly) {
  open_private();
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_TRUE(att.ok());
  const auto past = datapath::BootClock::now() - std::chrono::seconds(1);
  ok(dp_->add_rule(att->key, {*net::IpPrefix::parse("198.51.100.1"), Action::kAllow, past}));
  ok(dp_->add_rule(att->key, {*net::IpPrefix::parse("198.51.100.0/24"), Action::kDeny, past}));
  ok(dp_->add_rule(att->key, make_rule("198.51.100.2", Action::kAllow)));
  auto removed = dp_->sweep();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2U);
  EXPECT_EQ(dp_->rules(att->key)->size(), 1U);
}

// Connection-tracking tables stay with a slot its attachment left, for the
// next attach there; new ones are made ahead while fewer than 15 free
// slots have them. Sweeps drop those of free slots, a slot a sweep, but for
// 16 spare slots.
TEST_F(DatapathApiTest, SweepDropsTheTablesOfFreeSlotsButAFewSpares) {
  open_private();
  std::vector<std::unique_ptr<TestCgroup>> cgroups;
  std::vector<AttachmentKey> keys;
  // Slots 0-19. Slot 0's attach puts in tables for 0-15, and the maker
  // more as the spares run low: by the end, slots 0-34 have tables.
  for (int i = 0; i < 20; ++i) {
    cgroups.push_back(
        std::make_unique<TestCgroup>("sebpf-e2e-" + topo_->tag() + "/t" + std::to_string(i)));
    auto att = dp_->attach_cgroup(cgroups.back()->path(), {});
    ASSERT_TRUE(att.ok()) << att.error().message();
    keys.push_back(att->key);
  }
  auto swept = [&] {
    auto removed = dp_->sweep();
    EXPECT_TRUE(removed.ok()) << removed.error().message();
    return removed.ok() ? *removed : size_t{0};
  };
  EXPECT_EQ(swept(), 0U) << "15 spares, or tables of attachments in use, were dropped";
  for (const AttachmentKey& key : keys) ok(dp_->detach(key));
  // 35 spares: 19 go, a slot a sweep.
  for (int i = 0; i < 19; ++i) EXPECT_EQ(swept(), 1U * SEBPF_TRACK_TABLES) << "sweep " << i;
  EXPECT_EQ(swept(), 0U);
  for (size_t i = 0; i < cgroups.size(); ++i) {
    EXPECT_TRUE(dp_->attach_cgroup(cgroups[i]->path(), {}).ok()) << i;
  }
  dp_.reset();  // detaches all before the cgroups go
}

// Tables are made ahead only for free slots: those of an attachment are
// never replaced while it is attached (its flows would be forgotten), however
// attaches, detaches and the maker interleave.
TEST_F(DatapathApiTest, TablesMadeAheadNeverReplaceThoseOfAnAttachment) {
  open_private();
  std::vector<std::unique_ptr<TestCgroup>> cgroups;
  for (int i = 0; i < 40; ++i) {
    cgroups.push_back(
        std::make_unique<TestCgroup>("sebpf-e2e-" + topo_->tag() + "/m" + std::to_string(i)));
  }
  UniqueFd conntrack;
  std::map<uint32_t, std::array<uint32_t, SEBPF_TRACK_TABLES>> tables_at_attach;  // by slot
  std::vector<datapath::Attachment> attached;
  const auto attach = [&](const TestCgroup& cgroup) {
    auto att = dp_->attach_cgroup(cgroup.path(), {});
    ASSERT_TRUE(att.ok()) << att.error().message();
    if (!conntrack) conntrack = conntrack_map_of(cgroup.path());
    ASSERT_TRUE(conntrack) << "no sebpf_conntrack among the programs' maps";
    tables_at_attach[att->slot] = tables_of(conntrack.get(), att->slot);
    for (uint32_t id : tables_at_attach[att->slot]) EXPECT_NE(id, 0U) << "slot " << att->slot;
    attached.push_back(*att);
  };
  for (int i = 0; i < 30; ++i) attach(*cgroups[i]);
  // Every other one goes, and ten more come into the slots they left and
  // beyond, while the maker may still be at work.
  for (size_t i = 0; i < 30; i += 2) ok(dp_->detach(attached[i].key));
  for (int i = 30; i < 40; ++i) attach(*cgroups[i]);
  ASSERT_TRUE(dp_->sweep().ok());  // waits for the maker
  for (size_t i = 0; i < attached.size(); ++i) {
    if (i < 30 && i % 2 == 0) continue;  // detached
    const uint32_t slot = attached[i].slot;
    EXPECT_EQ(tables_of(conntrack.get(), slot), tables_at_attach[slot]) << "slot " << slot;
  }
  dp_.reset();
}

TEST_F(DatapathApiTest, DetachRemovesProgramsAndRules) {
  open_private();
  auto att = dp_->attach_cgroup(cgroup_->path(), {});
  ASSERT_TRUE(att.ok());
  EXPECT_NE(programs_on(cgroup_->path()).find("sebpf_connect4"), std::string::npos);
  ok(dp_->add_rule(att->key, make_rule("198.51.100.2", Action::kAllow)));
  ok(dp_->detach(att->key));
  EXPECT_EQ(programs_on(cgroup_->path()).find("sebpf"), std::string::npos);
  EXPECT_EQ(dp_->attachment(att->key).error().code(), Errc::kNotFound);
  EXPECT_EQ(*dp_->sweep(), 0U);  // nothing of it was left to reclaim
}

}  // namespace
}  // namespace sebpf::testing
