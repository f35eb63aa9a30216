#include "foreign_programs.h"

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "common/unique_fd.h"
#include "datapath/types.h"

namespace sebpf::testing {

namespace {

// A program of `type` that returns `verdict` and does nothing else.
UniqueFd load_returning(bpf_prog_type type, bpf_attach_type expected, int verdict) {
  // r0 = verdict; exit
  const bpf_insn returning[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K,
       .dst_reg = BPF_REG_0,
       .src_reg = 0,
       .off = 0,
       .imm = verdict},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0}};
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = expected);
  return UniqueFd(
      bpf_prog_load(type, "other_pass_all", "GPL", returning, std::size(returning), &opts));
}

}  // namespace

void put_pass_all_filter(const std::string& dev, bpf_tc_attach_point hook, uint32_t handle) {
  const UniqueFd prog = load_returning(BPF_PROG_TYPE_SCHED_CLS, bpf_attach_type{}, TC_ACT_OK);
  ASSERT_TRUE(prog) << "load a pass-all program: " << std::strerror(errno);
  LIBBPF_OPTS(bpf_tc_hook, where, .ifindex = static_cast<int>(if_nametoindex(dev.c_str())),
              .attach_point = hook);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog.get(), .flags = BPF_TC_F_REPLACE, .handle = handle,
              .priority = datapath::Config{}.tc_priority);
  ASSERT_EQ(bpf_tc_attach(&where, &opts), 0) << "put a filter on " << dev;
}

void put_pass_all_program_in_link(const std::string& pin) {
  const UniqueFd link(bpf_obj_get(pin.c_str()));
  ASSERT_TRUE(link) << "open link " << pin << ": " << std::strerror(errno);
  bpf_link_info link_info{};
  uint32_t len = sizeof link_info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(link.get(), &link_info, &len), 0) << pin;
  ASSERT_EQ(link_info.type, BPF_LINK_TYPE_CGROUP) << pin;
  // A link takes only a program of its own program's type and hook.
  const UniqueFd ours(bpf_prog_get_fd_by_id(link_info.prog_id));
  ASSERT_TRUE(ours) << pin;
  bpf_prog_info prog_info{};
  len = sizeof prog_info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(ours.get(), &prog_info, &len), 0) << pin;
  const UniqueFd prog =
      load_returning(static_cast<bpf_prog_type>(prog_info.type),
                     static_cast<bpf_attach_type>(link_info.cgroup.attach_type), 1);
  ASSERT_TRUE(prog) << "load a pass-all program for " << pin << ": " << std::strerror(errno);
  ASSERT_EQ(bpf_link_update(link.get(), prog.get(), nullptr), 0)
      << "put a program in link " << pin << ": " << std::strerror(errno);
}

}  // namespace sebpf::testing
