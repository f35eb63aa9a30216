// A TC attachment whose guest has its DNS endpoint on the host side's
// 198.51.100.1 and 2001:db8::1, port kEndpointPort of the range
// 20000-20999, in allowlist mode: for tests of what the guard and the
// track program do with a guest's DNS.
#pragma once

#include <cstdint>

#include "program_fixture.h"

namespace sebpf::testing {

class VmEndpointTest : public ProgramTest {
 protected:
  static constexpr uint16_t kEndpointPort = 20007;

  void configure(datapath::Config& config) override {
    config.dns_port_first = 20000;
    config.dns_port_last = 20999;
  }
  void SetUp() override {
    ProgramTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    datapath::DnsEndpoint dns;
    dns.v4 = *net::IpAddress::parse("198.51.100.1");
    dns.v6 = *net::IpAddress::parse("2001:db8::1");
    dns.port = kEndpointPort;
    ASSERT_TRUE(dp_->set_dns_endpoint(key_, dns).ok());
    set_mode(datapath::Mode::kAllowlist);
  }
};

}  // namespace sebpf::testing
