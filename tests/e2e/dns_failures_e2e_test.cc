// When things go wrong: upstreams that fail, answers whose addresses cannot
// be written (never released), malformed queries and zone transfers.
#include <algorithm>
#include <functional>
#include <thread>

#include "dns_fixture.h"
#include "support/within.h"

namespace sebpf::testing {
namespace {

TEST_F(DnsE2eTest, AFailedUpstreamIsSkippedAndNoUpstreamAtAllIsServfail) {
  // Port 9 on loopback: nothing listens, the kernel answers port unreachable.
  start_with_upstream("", "127.0.0.1:9");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  knot_->stop_and_read_query_log();
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeAaaa); }),
            kRcodeBase + dns::rcode::kServFail);
}

// A daemon runs on every host; while its workloads are quiet it should
// cost nothing. A query answered long before its upstream deadline must
// not wake the endpoint's loops when that deadline comes.
TEST_F(DnsE2eTest, AnsweredQueriesDoNotWakeTheEndpointAtTheirDeadlines) {
  start_with_upstream("dns:\n  upstream_timeout_ms: 200\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  for (int i = 0; i < 20; ++i) {
    auto answer = dns_query(endpoint, make_query("allowed.example", kTypeA));
    ASSERT_TRUE(answer.ok()) << answer.error().message();
    std::this_thread::sleep_for(milliseconds(5));  // deadlines a few ms apart
  }
  const uint64_t before = dns_loop_wakeups(daemon_->pid());
  ASSERT_GT(before, 0u) << "the loop threads are found by name";
  std::this_thread::sleep_for(milliseconds(600));  // past every query's deadline
  EXPECT_LE(dns_loop_wakeups(daemon_->pid()) - before, 2u)
      << "20 answered queries' deadlines woke the loops";
}

TEST_F(DnsE2eTest, AnAnswerWhoseAddressCannotBeWrittenIsServfailAndNeverReleased) {
  // Room for one learned host (a table of two, one part kept free): the
  // first answer's address fills it.
  start_with_upstream("datapath:\n  max_host_rules: 2\n");
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "other.example", kTypeA); }),
            kRcodeBase + dns::rcode::kServFail)
      << "the table has no room for the address, so the answer must not reach the client";
  EXPECT_EQ(in_cgroup([] { return tcp_echo("198.51.100.3", kEchoPort); }), EPERM);
  EXPECT_EQ(in_cgroup([&] { return resolve_and_connect(endpoint, "allowed.example", kTypeA); }), 0)
      << "addresses already held still resolve";
}

// An answer whose write stops part-way (the table is full) leaves nothing
// of it allowed: else those hosts would be allowed with no answer given,
// and a deny added over them later would not remove them. An attachment
// within its share writes without looking at the table, which can be full
// only when shares shrank as attachments came: in a table of 60 the first
// attachment, alone, takes its 30; a second takes its 20; a third (a share
// of 15) finds room for 9 more hosts, and asks for ten.
TEST_F(DnsE2eTest, AnAnswerOnlyPartlyWrittenLeavesNothingAllowed) {
  start_with_upstream("datapath:\n  max_host_rules: 60\n");
  const auto rcode_of = [](const v1::Attachment& att, const std::string& name) {
    auto answer = dns_query(endpoint_of(att), make_query(name, kTypeA));
    return answer.ok() ? static_cast<int>(answer->message.header.rcode) : kNoAnswer;
  };
  const auto first = attach_cgroup(dns_policy({"example"}));
  ASSERT_EQ(rcode_of(first, "twenty.example"), dns::rcode::kNoError);
  ASSERT_EQ(rcode_of(first, "ten.example"), dns::rcode::kNoError);

  TestCgroup second_cgroup("sebpf-e2e-dns2-" + topo_->tag());
  const auto second = attach_cgroup_at(second_cgroup, dns_policy({"example"}));
  ASSERT_EQ(rcode_of(second, "twenty.example"), dns::rcode::kNoError);
  TestCgroup third_cgroup("sebpf-e2e-dns3-" + topo_->tag());
  const auto third = attach_cgroup_at(third_cgroup, dns_policy({"example"}));
  ASSERT_EQ(rcode_of(third, "allowed.example"), dns::rcode::kNoError);
  EXPECT_EQ(
      in_cgroup_at(third_cgroup,
                   [&] { return resolve_and_connect(endpoint_of(third), "ten.example", kTypeA); }),
      kRcodeBase + dns::rcode::kServFail);
  for (const char* address : {"198.51.100.50", "198.51.100.58", "198.51.100.59"}) {
    EXPECT_EQ(in_cgroup_at(third_cgroup, [&] { return udp_connect(address, kEchoPort); }), EPERM)
        << address << " is allowed though its answer was refused";
  }
  EXPECT_EQ(in_cgroup_at(
                third_cgroup,
                [&] { return resolve_and_connect(endpoint_of(third), "other.example", kTypeA); }),
            0)
      << "the table has room again for an answer that fits";
}

TEST_F(DnsE2eTest, MalformedQueriesGetFormerrAndResponsesAreNotAnswered) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"allowed.example"})));
  auto garbage = make_query("allowed.example", kTypeA);
  garbage[5] = 3;  // three questions announced, one present
  auto formerr = dns_query(endpoint, garbage);
  ASSERT_TRUE(formerr.ok()) << formerr.error().message();
  EXPECT_EQ(formerr->message.header.rcode, dns::rcode::kFormErr);
  auto response = make_query("allowed.example", kTypeA);
  response[2] |= 0x80;  // QR: a response, which must not be answered
  EXPECT_FALSE(dns_query(endpoint, response, false, milliseconds(300)).ok());
}

// A zone transfer's answer is a stream of messages that an endpoint, which
// relays one message per query, cannot carry: it is refused as not
// implemented, over UDP and TCP, and never forwarded.
TEST_F(DnsE2eTest, ZoneTransfersAreNotImplementedAndNeverForwarded) {
  start_with_upstream();
  const auto endpoint = endpoint_of(attach_cgroup(dns_policy({"example"})));
  constexpr uint16_t kTypeIxfr = 251, kTypeAxfr = 252;
  for (const uint16_t type : {kTypeAxfr, kTypeIxfr}) {
    for (const bool tcp : {false, true}) {
      auto answer = dns_query(endpoint, make_query("xfr.example", type), tcp);
      ASSERT_TRUE(answer.ok()) << type << (tcp ? " over TCP: " : " over UDP: ")
                               << answer.error().message();
      EXPECT_EQ(answer->message.header.rcode, dns::rcode::kNotImp) << type << " tcp " << tcp;
    }
  }
  auto plain = dns_query(endpoint, make_query("allowed.example", kTypeTxt));
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->message.header.rcode, dns::rcode::kNoError) << "other types are served";
  const std::string log = knot_->stop_and_read_query_log();
  EXPECT_TRUE(KnotServer::log_has_query(log, "allowed.example")) << "the log is read correctly";
  EXPECT_FALSE(KnotServer::log_has_query(log, "xfr.example")) << "a transfer was forwarded";
}

// Guests' interfaces that change while the daemon starts: each is a veth,
// up, with an address, attached with a DNS policy; deleted at the end,
// whatever a failure left.
class DnsStartRaceTest : public DnsE2eTest {
 protected:
  void TearDown() override {
    for (const std::string& name : guests_) run_command({"ip", "link", "del", name});
    DnsE2eTest::TearDown();
  }

  // `count` guests; `address(i)` gives the i-th one's address, as `ip addr
  // add` takes it before "dev".
  void attach_guests(int count, const std::function<std::vector<std::string>(int)>& address) {
    for (int i = 0; i < count; ++i) {
      const std::string name = "sbq" + topo_->tag() + "-" + std::to_string(i);
      must_run({"ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"});
      guests_.push_back(name);
      std::vector<std::string> add = {"ip", "addr", "add"};
      for (const std::string& arg : address(i)) add.push_back(arg);
      add.insert(add.end(), {"dev", name});
      must_run(add);
      must_run({"ip", "link", "set", name, "up"});
      ASSERT_FALSE(attach_interface(name, dns_policy({"allowed.example"})).id().empty());
    }
  }

  // SIGKILLs the daemon and starts it again while `change` is done to each
  // guest in turn, 4 ms apart: spread over the start, so that some land
  // between its reading a guest's interface and binding its endpoint.
  void restart_while(const std::function<void(const std::string& guest, int i)>& change) {
    // Forked while gRPC's threads are idle (see Child), told to go once
    // the daemon is gone.
    Rendezvous meet;
    ASSERT_TRUE(meet.valid());
    Child changer([&] {
      if (!meet.ready_then_wait()) return 1;
      for (size_t i = 0; i < guests_.size(); ++i) {
        change(guests_[i], static_cast<int>(i));
        std::this_thread::sleep_for(milliseconds(4));
      }
      return 0;
    });
    meet.forked();
    ASSERT_TRUE(meet.wait_ready());
    daemon_->kill9();
    ASSERT_TRUE(meet.go());
    start_with_upstream();
    EXPECT_EQ(changer.wait(), 0);
  }

  std::vector<std::string> guests_;
};

// VMs shut down while the daemon starts: an interface found at adoption
// may be gone by the time its endpoint is bound (the bind to its address
// fails). That is no fault: the deletion's event detaches it.
TEST_F(DnsStartRaceTest, InterfacesDeletedWhileTheDaemonStartsAreDetachedWithoutAnError) {
  start_with_upstream();
  attach_guests(24, [](int i) {
    return std::vector<std::string>{"203.0.113." + std::to_string(100 + i) + "/32"};
  });
  if (HasFatalFailure()) return;
  restart_while([](const std::string& guest, int) { run_command({"ip", "link", "del", guest}); });
  if (HasFatalFailure()) return;
  EXPECT_TRUE(within(milliseconds(3000), [&] {
    v1::ListResponse list;
    return call_list(&list).ok() && list.attachments_size() == 0;
  })) << daemon_->log();
  EXPECT_EQ(daemon_->log().find("\"level\":\"error\""), std::string::npos) << daemon_->log();
}

// A guest's reboot takes its interface's IPv6 addresses away (the link goes
// down), a flush its IPv4 ones: when that happens between the daemon's
// start reading an address and binding its endpoint there, the endpoint
// waits for the address's event, with no error line.
TEST_F(DnsStartRaceTest, AddressesTakenAwayWhileTheDaemonStartsLeaveEndpointsWithoutAnError) {
  start_with_upstream();
  constexpr int kGuests = 24;
  attach_guests(kGuests, [](int i) {
    if (i % 2 == 0) return std::vector<std::string>{"203.0.113." + std::to_string(100 + i) + "/32"};
    return std::vector<std::string>{"2001:db8:7::" + std::to_string(100 + i) + "/128", "nodad"};
  });
  if (HasFatalFailure()) return;
  restart_while([](const std::string& guest, int i) {
    if (i % 2 == 0) {
      run_command({"ip", "addr", "flush", "dev", guest});
    } else {
      run_command({"ip", "link", "set", guest, "down"});
    }
  });
  if (HasFatalFailure()) return;
  EXPECT_TRUE(within(milliseconds(3000), [&] {
    v1::ListResponse list;
    if (!call_list(&list).ok() || list.attachments_size() != kGuests) return false;
    return std::all_of(
        list.attachments().begin(), list.attachments().end(),
        [](const v1::Attachment& a) { return a.dns().ipv4().empty() && a.dns().ipv6().empty(); });
  })) << daemon_->log();
  EXPECT_EQ(daemon_->log().find("\"level\":\"error\""), std::string::npos) << daemon_->log();
}

}  // namespace
}  // namespace sebpf::testing
