// How a DNS proxy loop waits for its upstream's answers: a quick
// upstream's answers are taken without sleeping, a slow one is not polled
// for, and a loop polls for a sixteenth of the time it sleeps.
#include <unistd.h>

#include <chrono>
#include <thread>

#include "dns_proxy_fixture.h"

namespace sebpf::dns {
namespace {

// An upstream on the same host answers within microseconds; a loop that
// slept meanwhile would pay a wake-up per answer (tens of microseconds on
// a VM). Waiting for its answers, the loop polls instead: it sleeps once
// per query (waiting for the next), not twice.
TEST_F(DnsProxySpinTest, AQuickUpstreamsAnswersAreTakenWithoutSleeping) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(200);  // time for a slow CI machine
  start(backend, config);
  ASSERT_TRUE(ask("warm.example.test").ok());
  // The loop sleeps: it has slept once, and banks the polling time that
  // the queries below use (a sixteenth of 200 ms).
  std::this_thread::sleep_for(milliseconds(200));

  const uint64_t before = testing::dns_loop_wakeups(getpid());
  ASSERT_GT(before, 0u) << "the loop thread is found by name";
  constexpr uint64_t kQueries = 20;
  ask_each(kQueries);
  if (HasFatalFailure()) return;
  EXPECT_LE(testing::dns_loop_wakeups(getpid()) - before, kQueries * 3 / 2)
      << "the loop slept while answers were on their way";
}

// An upstream across a network answers in milliseconds: polling for it
// would burn a CPU for nothing. After a few polls that see no answer the
// loop sleeps at once (but for a rare probe).
TEST_F(DnsProxySpinTest, ASlowUpstreamIsNotPolledFor) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(10);
  start(backend, config, milliseconds(20));
  // Polling for every answer: 30 x 10 ms = 30 ticks. Four misses and a
  // probe or two: about 6.
  EXPECT_LE(loop_ticks_asking(30), 15u)
      << "the loop polled for answers that never come that quickly";
}

// A loop pays for polling with sleep: a busy one, whose CPU time the
// upstream and the clients want, hardly polls. Here each answer takes 2 ms
// (well within answer_spin, so every poll would see it): a loop polling
// for all of them would spend the whole time on it.
TEST_F(DnsProxySpinTest, ALoopPollsForASixteenthOfTheTimeItSleeps) {
  RacingBackend& backend = make_backend(allowlist({{"example.test", Action::kAllow}}));
  ProxyConfig config;
  config.answer_spin = std::chrono::milliseconds(10);
  start(backend, config, milliseconds(2));
  // Polling through every answer: 150 x 2 ms = 30 ticks. A sixteenth of
  // that: about 2.
  EXPECT_LE(loop_ticks_asking(150), 10u) << "the loop polled for longer than its sleep paid for";
}

}  // namespace
}  // namespace sebpf::dns
