// The pieces of the DNS endpoints that need no sockets: how domain rules
// and DNS modes judge names, resolv.conf, and the addresses users write for
// upstreams.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/name_policy.h"
#include "dns/resolv_conf.h"
#include "net/socket_address.h"

namespace sebpf::dns {
namespace {

using datapath::Action;
using datapath::Mode;

NamePolicy policy(Mode mode) {
  NamePolicy p;
  p.mode = mode;
  EXPECT_TRUE(p.rules.add("example.org", Action::kAllow).ok());
  EXPECT_TRUE(p.rules.add("ads.example.org", Action::kDeny).ok());
  EXPECT_TRUE(p.rules.add("tracker.example", Action::kDeny).ok());
  return p;
}

TEST(NamePolicyTest, EachModeJudgesQueries) {
  const NamePolicy allow = policy(Mode::kAllowlist);
  EXPECT_EQ(judge_query(allow, "example.org"), QueryVerdict::kResolve);
  EXPECT_EQ(judge_query(allow, "www.example.org"), QueryVerdict::kResolve);
  EXPECT_EQ(judge_query(allow, "x.ads.example.org"), QueryVerdict::kRefuse);
  EXPECT_EQ(judge_query(allow, "example.net"), QueryVerdict::kRefuse);
  EXPECT_EQ(judge_query(allow, ""), QueryVerdict::kRefuse) << "the root";

  const NamePolicy deny = policy(Mode::kDenylist);
  EXPECT_EQ(judge_query(deny, "example.net"), QueryVerdict::kResolve);
  EXPECT_EQ(judge_query(deny, "a.tracker.example"), QueryVerdict::kRefuse);

  EXPECT_EQ(judge_query(policy(Mode::kBlockAll), "example.org"), QueryVerdict::kRefuse);
  EXPECT_EQ(judge_query(policy(Mode::kDisabled), "tracker.example"), QueryVerdict::kForward);

  NamePolicy unknown = policy(Mode::kAllowlist);
  unknown.mode = static_cast<Mode>(77);
  EXPECT_EQ(judge_query(unknown, "example.org"), QueryVerdict::kRefuse) << "fail closed";
}

// A query name is a sequence of labels, whatever bytes they hold: one with
// labels a rule could never hold (escaped bytes, '*', an address-like label,
// more than 253 characters of presentation form) is still a subdomain of its
// parents. A denied parent must refuse it, or a deny rule could be walked
// around with a strange label.
TEST(NamePolicyTest, OddLabelsDoNotEscapeTheirParentsRules) {
  const std::string long_label_run = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                     std::string(63, 'c') + "." + std::string(40, 'd');
  const NamePolicy deny = policy(Mode::kDenylist);
  for (const std::string& name : std::vector<std::string>{
           "a\\000b.tracker.example", "*.tracker.example", "in valid.tracker.example",
           "1.2.3.4.tracker.example", "-x-.tracker.example", "x\\046y.tracker.example",
           "A\\200.TRACKER.Example.", long_label_run + ".tracker.example"}) {
    EXPECT_EQ(judge_query(deny, name), QueryVerdict::kRefuse) << name;
    EXPECT_TRUE(chain_name_denied(deny, name)) << name;
  }
  const NamePolicy allow = policy(Mode::kAllowlist);
  EXPECT_EQ(judge_query(allow, "_srv\\000.www.example.org"), QueryVerdict::kResolve);
  EXPECT_EQ(judge_query(allow, "x.ads.example.org\\046evil.net"), QueryVerdict::kRefuse)
      << "an escaped dot is part of a label, not a label boundary";
}

TEST(NamePolicyTest, ChainTargetsAreRefusedOnlyByAnExplicitDeny) {
  const NamePolicy allow = policy(Mode::kAllowlist);
  EXPECT_FALSE(chain_name_denied(allow, "edge.cdn.example")) << "no rule: the CDN case";
  EXPECT_TRUE(chain_name_denied(allow, "ads.example.org"));
  EXPECT_TRUE(chain_name_denied(allow, "x.tracker.example"));
  EXPECT_FALSE(chain_name_denied(policy(Mode::kDisabled), "tracker.example"));
}

TEST(ResolvConfTest, NameserversInOrderAndBadLinesAreErrors) {
  auto ok = parse_resolv_conf(
      "# comment\n; another\nsearch example.org\nnameserver 192.0.2.53\n"
      "  nameserver   2001:db8::53  \noptions edns0\n");
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  ASSERT_EQ(ok->size(), 2U);
  EXPECT_EQ((*ok)[0].to_string(), "192.0.2.53:53");
  EXPECT_EQ((*ok)[1].to_string(), "[2001:db8::53]:53");

  EXPECT_NE(parse_resolv_conf("nameserver\n").error().message().find("line 1"), std::string::npos);
  EXPECT_NE(
      parse_resolv_conf("search x\nnameserver fe80::1%eth0\n").error().message().find("line 2"),
      std::string::npos)
      << "a zone id is not dropped silently";
  EXPECT_FALSE(parse_resolv_conf("search example.org\n").ok()) << "nowhere to ask";
  EXPECT_EQ(read_resolv_conf("/nonexistent/resolv.conf").error().code(), Errc::kNotFound);
  EXPECT_EQ(read_resolv_conf("/dev/zero").error().message(),
            "dns.resolv_conf /dev/zero is not a regular file")
      << "read whole: one that never ends is refused";
}

TEST(SocketAddressTest, WhatUsersWriteAndNothingElse) {
  EXPECT_EQ(net::SocketAddress::parse("192.0.2.1", 53)->to_string(), "192.0.2.1:53");
  EXPECT_EQ(net::SocketAddress::parse("192.0.2.1:5353", 53)->port(), 5353);
  EXPECT_EQ(net::SocketAddress::parse("2001:db8::1", 53)->to_string(), "[2001:db8::1]:53");
  EXPECT_EQ(net::SocketAddress::parse("[2001:db8::1]:99", 53)->port(), 99);
  for (const char* bad :
       {"", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:x", "[2001:db8::1",
        "[2001:db8::1]x", "[192.0.2.1]:", "host:53", "192.0.2.1:53:53"}) {
    EXPECT_FALSE(net::SocketAddress::parse(bad, 53).ok()) << bad;
  }
  sockaddr_storage ss;
  const auto a = *net::SocketAddress::parse("[2001:db8::7]:853", 53);
  const socklen_t len = a.to_sockaddr(ss);
  EXPECT_EQ(*net::SocketAddress::from_sockaddr(ss, len), a);
}

}  // namespace
}  // namespace sebpf::dns
