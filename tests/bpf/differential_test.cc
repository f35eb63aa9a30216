// The kernel's verdicts against a plain reference model of the rule
// semantics, on random nested rule sets: longest active prefix decides, an
// expired side does not count, allow and deny on one prefix means deny,
// nothing matching means the mode's default.
#include <cstring>
#include <random>

#include "program_fixture.h"

namespace sebpf::testing {
namespace {

using datapath::Action;
using datapath::BootClock;
using datapath::Mode;
using datapath::Rule;

// Whether `rules` allow `dst` under allowlist (default deny) or denylist.
bool model_allows(const std::vector<Rule>& rules, const net::IpAddress& dst, Mode mode,
                  BootClock::time_point now) {
  int best_len = -1;
  bool best_deny = false;
  bool best_allow = false;
  for (const Rule& r : rules) {
    if (!r.prefix.contains(dst)) continue;
    if (r.expires && *r.expires <= now) continue;
    const int len = r.prefix.length();
    if (len > best_len) {
      best_len = len;
      best_deny = best_allow = false;
    }
    if (len == best_len) (r.action == Action::kDeny ? best_deny : best_allow) = true;
  }
  if (best_len < 0) return mode == Mode::kDenylist;
  return !best_deny;
}

net::IpAddress from_bytes(net::Family family, const std::array<uint8_t, 16>& b) {
  if (family == net::Family::kIPv6) return net::IpAddress::v6(b);
  uint32_t v4 = 0;
  std::memcpy(&v4, b.data(), 4);
  return net::IpAddress::v4(v4);
}

class DifferentialTest : public ProgramTest {
 protected:
  // A random address inside `base`.
  net::IpAddress random_in(const net::IpPrefix& base) {
    std::array<uint8_t, 16> b = base.address().bytes();
    for (int i = base.length(); i < base.address().max_prefix_length(); ++i) {
      if (rng_() & 1) b[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(0x80 >> (i % 8));
    }
    return from_bytes(base.family(), b);
  }

  // A random prefix inside `base`; one in three is a single host.
  net::IpPrefix random_prefix(const net::IpPrefix& base) {
    const int max = base.address().max_prefix_length();
    const int len =
        rng_() % 3 == 0 ? max : std::uniform_int_distribution<int>(base.length(), max)(rng_);
    std::array<uint8_t, 16> b = random_in(base).bytes();
    for (int i = len; i < max; ++i) {
      b[static_cast<size_t>(i / 8)] &= static_cast<uint8_t>(~(0x80 >> (i % 8)));
    }
    return *net::IpPrefix::make(from_bytes(base.family(), b), len);
  }

  std::mt19937_64 rng_{0x5eb};
};

TEST_P(DifferentialTest, KernelAgreesWithTheModel) {
  const auto now = BootClock::now();
  const net::IpPrefix bases[] = {*net::IpPrefix::parse("198.51.100.0/26"),
                                 *net::IpPrefix::parse("2001:db8::/122")};
  int checked = 0;
  for (int round = 0; round < 40; ++round) {
    const Mode mode = round % 2 ? Mode::kDenylist : Mode::kAllowlist;
    std::vector<Rule> rules;
    for (int i = 0; i < 30; ++i) {
      const net::IpPrefix& base = bases[rng_() % 2];
      Rule r{random_prefix(base), rng_() % 2 ? Action::kAllow : Action::kDeny, std::nullopt};
      switch (rng_() % 3) {
        case 0:
          r.expires = now - std::chrono::seconds(1);
          break;
        case 1:
          r.expires = now + std::chrono::hours(1);
          break;
        default:
          break;
      }
      rules.push_back(r);
    }
    ASSERT_TRUE(dp_->replace_policy(key_, mode, rules).ok());
    for (int i = 0; i < 40; ++i) {
      const net::IpPrefix& base = bases[rng_() % 2];
      const net::IpAddress dst = random_in(base);
      PacketSpec spec;
      spec.src = base.family() == net::Family::kIPv4 ? "203.0.113.2" : "2001:db8:1::2";
      spec.dst = dst.to_string();
      const bool expected = model_allows(rules, dst, mode, BootClock::now());
      ASSERT_EQ(out(spec), expected)
          << "round " << round << ", " << datapath::mode_name(mode) << ", dst " << spec.dst;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1600);
}

INSTANTIATE_TEST_SUITE_P(Programs, DifferentialTest,
                         ::testing::Values(ProgramKind::kTc, ProgramKind::kCgroupSkb), kind_name);

}  // namespace
}  // namespace sebpf::testing
