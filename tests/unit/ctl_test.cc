// superebpfctl's own checks and output, without a daemon.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "ctl/arguments.h"
#include "ctl/daemon_client.h"
#include "ctl/exit_codes.h"
#include "ctl/output.h"

namespace sebpf::ctl {
namespace {

TEST(CtlArgumentsTest, ModesAndActions) {
  EXPECT_EQ(*parse_mode("allowlist"), v1::MODE_ALLOWLIST);
  EXPECT_EQ(*parse_mode("block-all"), v1::MODE_BLOCK_ALL);
  EXPECT_EQ(*parse_mode("block_all"), v1::MODE_BLOCK_ALL);
  EXPECT_FALSE(parse_mode("Allowlist").ok());
  EXPECT_FALSE(parse_mode("").ok());
  EXPECT_EQ(mode_name(*parse_mode("denylist")), "denylist");
  EXPECT_EQ(*parse_action("deny"), v1::ACTION_DENY);
  EXPECT_NE(parse_action("drop").error().message().find("one of allow, deny"), std::string::npos);
}

TEST(CtlArgumentsTest, TtlsTakeOneUnit) {
  EXPECT_EQ(*parse_ttl("90"), 90U);
  EXPECT_EQ(*parse_ttl("90s"), 90U);
  EXPECT_EQ(*parse_ttl("15m"), 900U);
  EXPECT_EQ(*parse_ttl("12h"), 43200U);
  EXPECT_EQ(*parse_ttl("7d"), 604800U);
  for (const char* bad : {"", "m", "-5", "5x", "1h30m", " 5", "5 ", "0x10", "1.5h"}) {
    EXPECT_FALSE(parse_ttl(bad).ok()) << bad;
  }
  EXPECT_NE(parse_ttl("0").error().message().find("never expires"), std::string::npos);
  EXPECT_NE(parse_ttl("99999999999999999999").error().message().find("too long"),
            std::string::npos);
  EXPECT_NE(parse_ttl("999999999999999999d").error().message().find("too long"), std::string::npos);
}

TEST(CtlArgumentsTest, MetadataIsKeyEqualsValue) {
  EXPECT_EQ(*parse_metadata("vm=7"), (std::pair<std::string, std::string>{"vm", "7"}));
  EXPECT_EQ(*parse_metadata("k="), (std::pair<std::string, std::string>{"k", ""}));
  EXPECT_EQ(*parse_metadata("k=a=b"), (std::pair<std::string, std::string>{"k", "a=b"}));
  EXPECT_FALSE(parse_metadata("novalue").ok());
  EXPECT_FALSE(parse_metadata("=v").ok());
}

TEST(CtlClientTest, StatusesBecomeErrorsAndExitCodes) {
  const auto exit_of = [](grpc::StatusCode code, const std::string& reason = "") {
    return exit_code_for(error_from_status(grpc::Status(code, "m"), reason, "/s").code());
  };
  EXPECT_EQ(exit_of(grpc::StatusCode::UNAVAILABLE), kExitUnreachable);
  EXPECT_EQ(exit_of(grpc::StatusCode::DEADLINE_EXCEEDED), kExitUnreachable);
  EXPECT_EQ(exit_of(grpc::StatusCode::PERMISSION_DENIED, "PEER_NOT_ALLOWED"), kExitPermission);
  EXPECT_EQ(exit_of(grpc::StatusCode::NOT_FOUND), kExitNotFound);
  EXPECT_EQ(exit_of(grpc::StatusCode::INVALID_ARGUMENT), kExitInvalid);
  EXPECT_EQ(exit_of(grpc::StatusCode::ALREADY_EXISTS), kExitAlreadyAttached);
  EXPECT_EQ(exit_of(grpc::StatusCode::RESOURCE_EXHAUSTED), kExitCannotNow);
  EXPECT_EQ(exit_of(grpc::StatusCode::FAILED_PRECONDITION), kExitCannotNow);
  EXPECT_EQ(exit_of(grpc::StatusCode::UNIMPLEMENTED), kExitCannotNow);
  EXPECT_EQ(exit_of(grpc::StatusCode::INTERNAL), kExitFailure);
  EXPECT_EQ(exit_of(grpc::StatusCode::UNKNOWN), kExitFailure);

  const Error refused = error_from_status(
      grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not allowed"), "PEER_NOT_ALLOWED", "/s");
  EXPECT_NE(refused.message().find("[PEER_NOT_ALLOWED]"), std::string::npos);
  EXPECT_NE(refused.message().find("socket.allowed_uids"), std::string::npos);
  const Error down =
      error_from_status(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x"), "", "/run/x.sock");
  EXPECT_NE(down.message().find("/run/x.sock"), std::string::npos);
}

TEST(CtlOutputTest, TablesAlignColumns) {
  EXPECT_EQ(format_table({{"ID", "TARGET"}, {"att-10", "/a"}, {"att-2", "/bb"}}),
            "ID      TARGET\n"
            "att-10  /a\n"
            "att-2   /bb\n");
}

TEST(CtlOutputTest, CountersReadForPeople) {
  v1::Counters c;
  EXPECT_NE(counters_text(c).find("nothing judged yet"), std::string::npos) << counters_text(c);
  v1::Counter* denied = c.add_counters();
  denied->set_hook("socket");
  denied->set_reason("deny_default");
  denied->set_count(3);
  c.set_denied(3);
  const std::string text = counters_text(c);
  EXPECT_NE(text.find("allowed:  0\ndenied:   3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("HOOK    REASON        COUNT\nsocket  deny_default  3\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("DNS"), std::string::npos) << "no endpoint, no DNS table\n" << text;
  c.mutable_dns()->set_refused(2);
  EXPECT_NE(counters_text(c).find("refused                2\n"), std::string::npos)
      << counters_text(c);
}

TEST(CtlOutputTest, PolicyAndAttachmentsReadForPeople) {
  v1::Policy p;
  p.set_mode(v1::MODE_ALLOWLIST);
  p.set_dns_mode(v1::MODE_DENYLIST);
  v1::CidrRule* r = p.add_cidrs();
  r->set_cidr("198.51.100.0/24");
  r->set_action(v1::ACTION_DENY);
  r->mutable_expires_at()->set_seconds(1'800'000'000);
  const std::string text = policy_text(p);
  EXPECT_NE(text.find("mode:      allowlist"), std::string::npos) << text;
  EXPECT_NE(text.find("dns mode:  denylist"), std::string::npos) << text;
  EXPECT_NE(text.find("198.51.100.0/24  deny    2027-01-15T08:00:00Z"), std::string::npos) << text;
  EXPECT_NE(text.find("no domain rules"), std::string::npos) << text;

  v1::ListResponse list;
  v1::Attachment* a = list.add_attachments();
  a->set_id("att-3");
  a->set_type(v1::TARGET_TYPE_INTERFACE);
  a->set_target("vm3tap");
  a->mutable_dns()->set_ipv4("198.51.100.1");
  a->mutable_dns()->set_ipv6("2001:db8::1");
  a->mutable_dns()->set_port(20003);
  (*a->mutable_metadata())["vm"] = "3";
  (*a->mutable_metadata())["tenant"] = "t";
  a->add_warnings("process 7 may open packet sockets");
  const std::string table = attachments_table(list);
  EXPECT_NE(table.find("198.51.100.1,[2001:db8::1]:20003"), std::string::npos) << table;
  EXPECT_NE(table.find("WARNINGS"), std::string::npos) << table;
  EXPECT_NE(table.find("1         tenant=t,vm=3"), std::string::npos) << "the count of warnings\n"
                                                                      << table;
  EXPECT_NE(attachment_text(*a).find("warning:   process 7 may open packet sockets"),
            std::string::npos)
      << attachment_text(*a);
  EXPECT_NE(to_json(list).find("\"target\": \"vm3tap\""), std::string::npos);
}

}  // namespace
}  // namespace sebpf::ctl
