// The DNS proxy when a policy changes between judging an answer and
// learning its addresses: a deny that lands first refuses the answer, a
// change that still allows the name learns it on the second try, and a
// policy that keeps changing gets SERVFAIL, never an unjudged answer.
#include <string>
#include <vector>

#include "dns_proxy_fixture.h"

namespace sebpf::dns {
namespace {

TEST_F(DnsProxyRaceTest, ADenyLandingBeforeTheAnswerIsLearnedRefusesIt) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  backend.change_before_each_learn(
      {allowlist({{"example.test", Action::kAllow}, {"www.example.test", Action::kDeny}})});

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kNxDomain);
  EXPECT_TRUE(testing::answer_addresses(answer->message).empty());
  EXPECT_TRUE(backend.learned().empty()) << "an address of a name denied first";
  EXPECT_EQ(proxy_->counters(1)->refused, 1u);
}

TEST_F(DnsProxyRaceTest, AChangeThatStillAllowsTheNameLearnsItOnTheSecondTry) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  start(backend);
  backend.change_before_each_learn(
      {allowlist({{"example.test", Action::kAllow}, {"other.test", Action::kDeny}})});

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kNoError);
  EXPECT_EQ(testing::answer_addresses(answer->message), std::vector<std::string>{kAnswerAddress});
  EXPECT_EQ(backend.learned(), std::vector<std::string>{kAnswerAddress});
  EXPECT_EQ(backend.learn_calls(), 2);
}

TEST_F(DnsProxyRaceTest, APolicyThatKeepsChangingGetsServfailNotAnUnjudgedAnswer) {
  const auto allowed = allowlist({{"example.test", Action::kAllow}});
  RacingBackend& backend = make_backend(allowed);
  start(backend);
  backend.change_before_each_learn(std::vector(10, allowed));

  auto answer = ask("www.example.test");
  ASSERT_TRUE(answer.ok()) << answer.error().message();
  EXPECT_EQ(answer->message.header.rcode, rcode::kServFail);
  EXPECT_TRUE(backend.learned().empty());
}

}  // namespace
}  // namespace sebpf::dns
