// Frames a workload writes whole through a packet socket (AF_PACKET, what
// CAP_NET_RAW allows) meet no cgroup program. The datapath's packet socket
// filter, on the egress of the interfaces of the namespace the workload
// sends from, drops them while its attachment enforces. Here the workload
// sends from the test namespace, out of its veth towards this one.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "e2e_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::Mode;

// The errno of setsockopt on a new socket, 0 when it was accepted: the
// options that would send frames past the egress filter.
int set_qdisc_bypass() {
  UniqueFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (!fd) return 1000 + errno;
  return setsockopt(fd.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) == 0 ? 0 : errno;
}

int register_xdp_umem() {
  UniqueFd fd(socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!fd) return 1000 + errno;
  constexpr size_t kSize = 2 * 4096;
  void* area = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return 2000 + errno;
  xdp_umem_reg reg{};
  reg.addr = reinterpret_cast<uintptr_t>(area);
  reg.len = kSize;
  reg.chunk_size = 4096;
  const int result =
      setsockopt(fd.get(), SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) == 0 ? 0 : errno;
  munmap(area, kSize);
  return result;
}

class PacketSocketE2eTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    open_private();
  }

  datapath::AttachmentKey attach(Mode mode, const std::vector<datapath::Rule>& rules = {}) {
    auto att = dp_->attach_cgroup(cgroup_->path(),
                                  {.mode = mode, .dns = {}, .direction = {}, .rules = rules});
    EXPECT_TRUE(att.ok()) << att.error().message();
    return att.ok() ? att->key : datapath::AttachmentKey{};
  }

  void guard_test_namespace() {
    UniqueFd ns(open(("/run/netns/" + topo_->ns().name()).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(ns);
    ok(dp_->guard_packet_sockets(ns.get()));
  }

  // Runs fn in the test namespace, in the workload cgroup or not.
  int in_test_namespace(bool in_workload, const std::function<int()>& fn) {
    const auto enter_and_run = [&] { return topo_->ns().enter() ? fn() : 81; };
    return in_workload ? in_cgroup(enter_and_run) : run_in_child(enter_and_run);
  }

  // Whether a frame a process sends from the test namespace through a
  // packet socket arrives on this side of the veth.
  bool frame_gets_out(bool in_workload) {
    UniqueFd rx = frame_listener(topo_->host_if());
    EXPECT_TRUE(rx);
    const std::string out = topo_->peer_if();
    const int sent = in_test_namespace(in_workload, [&] { return send_frame(out); });
    // A dropped frame fails sendto() with ENOBUFS (the qdisc's verdict).
    EXPECT_TRUE(sent == 0 || sent == ENOBUFS) << sent;
    return rx && frame_arrives(rx.get(), milliseconds(1000));
  }
};

TEST_F(PacketSocketE2eTest, FramesFromPacketSocketsOfAnEnforcingWorkloadAreDropped) {
  const auto key = attach(Mode::kAllowlist);
  ASSERT_TRUE(frame_gets_out(true))
      << "without the filter a packet socket's frame should pass (else this test shows nothing)";

  guard_test_namespace();
  EXPECT_FALSE(frame_gets_out(true)) << "a frame of the enforcing workload got out";
  auto c = dp_->counters(key);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->get(SEBPF_HOOK_PACKET, SEBPF_REASON_DENY_FORGED), 1U);
  EXPECT_TRUE(frame_gets_out(false)) << "a process outside any attachment was stopped";

  ok(dp_->set_mode(key, Mode::kDisabled));
  EXPECT_TRUE(frame_gets_out(true)) << "a disabled attachment must not enforce";
  ok(dp_->set_mode(key, Mode::kDenylist));
  EXPECT_FALSE(frame_gets_out(true)) << "a denylist enforces too: the frame's headers are forged";
}

TEST_F(PacketSocketE2eTest, OrdinarySocketsThroughAGuardedInterfaceAreJudgedByThePolicyAlone) {
  topo_->start_host_server();
  attach(Mode::kAllowlist, {make_rule("198.51.100.1", Action::kAllow)});
  guard_test_namespace();
  EXPECT_EQ(in_test_namespace(true, [] { return tcp_echo("198.51.100.1", kEchoPort); }), 0);
  EXPECT_EQ(in_test_namespace(true, [] { return udp_echo("198.51.100.1", kEchoPort, false); }), 0);
  EXPECT_EQ(in_test_namespace(true, [] { return tcp_echo("203.0.113.1", kEchoPort); }), EPERM);
}

// PACKET_QDISC_BYPASS sends a packet socket's frames straight to the
// driver, and AF_XDP sockets (set up through SOL_XDP options) do the same:
// neither passes the egress filter, so both are refused, even while the
// attachment is disabled (a socket set up then would escape once it
// enforces).
TEST_F(PacketSocketE2eTest, OptionsThatSendPastTheFilterAreRefusedInEveryMode) {
  const auto key = attach(Mode::kAllowlist);
  for (Mode mode : {Mode::kAllowlist, Mode::kDisabled}) {
    ok(dp_->set_mode(key, mode));
    EXPECT_EQ(in_cgroup(set_qdisc_bypass), EPERM);
    EXPECT_EQ(in_cgroup(register_xdp_umem), EPERM);
  }
  EXPECT_EQ(run_in_child(set_qdisc_bypass), 0) << "outside any attachment the option works";
  EXPECT_NE(run_in_child(register_xdp_umem), EPERM);
}

// The daemon looks at every interface of its guarded namespace at start,
// and again after lost netlink events. An interface made after the guard
// and found before its RTM_NEWLINK was read lacks the filter because it is
// new; one that had ours lacks it because another program took it, which
// the daemon reports as an error. The look tells one from the other, and
// guards both. The look works on the calling thread's namespace, so a
// thread in the test namespace plays the daemon.
TEST_F(PacketSocketE2eTest, ALookAtAGuardedNamespaceReportsOnlyFiltersTakenFromIt) {
  const std::string ns = topo_->ns().name();
  const std::string added = "sebpfd" + topo_->tag();
  const auto carries_filter = [&](const std::string& dev) {
    return run_command({"ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, "egress"})
               .output.find("sebpf_tc_packet") != std::string::npos;
  };
  const auto take_filter = [&](const std::string& dev) {
    must_run({"ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "clsact"});
  };
  std::thread([&] {
    if (!topo_->ns().enter()) {
      ADD_FAILURE() << "cannot enter " << ns;
      return;
    }
    const auto look = [&](const std::string& dev) -> std::string {
      auto found = dp_->restore_packet_socket_filter(if_nametoindex(dev.c_str()));
      return found.ok() ? *found : "error: " + found.error().message();
    };
    ok(dp_->guard_packet_sockets(-1));

    // A veth pair whose both ends stay here (this kernel has no dummy).
    must_run({"ip", "-n", ns, "link", "add", added, "type", "veth", "peer", "name", added + "p"});
    EXPECT_FALSE(carries_filter(added));
    EXPECT_EQ(look(added), "") << "an interface made after the guard was reported as robbed";
    EXPECT_TRUE(carries_filter(added));
    take_filter(added);
    EXPECT_EQ(look(added), "missing") << "guarded once, its loss is another program's doing";
    EXPECT_TRUE(carries_filter(added));

    take_filter(topo_->peer_if());
    EXPECT_EQ(look(topo_->peer_if()), "missing") << "guarded with the namespace";
    EXPECT_TRUE(carries_filter(topo_->peer_if()));

    // The daemon forgets a deleted interface; a new one may take its index
    // (here on purpose, as one moved in from another namespace may).
    const unsigned index = if_nametoindex(added.c_str());
    must_run({"ip", "-n", ns, "link", "del", added});
    dp_->forget_interface(index);
    must_run({"ip", "-n", ns, "link", "add", "name", added, "index", std::to_string(index), "type",
              "veth", "peer", "name", added + "p"});
    EXPECT_EQ(look(added), "") << "a newcomer at a deleted interface's index was reported";
    EXPECT_TRUE(carries_filter(added));

    auto removed = dp_->unguard_packet_sockets(-1);
    EXPECT_TRUE(removed.ok() && *removed >= 3) << (removed.ok() ? "" : removed.error().message());
  }).join();
}

}  // namespace
}  // namespace sebpf::testing
