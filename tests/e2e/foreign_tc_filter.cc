#include "foreign_tc_filter.h"

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

void put_pass_all_filter(const std::string& dev, bpf_tc_attach_point hook, uint32_t handle) {
  // r0 = TC_ACT_OK; exit
  const bpf_insn pass_all[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K,
       .dst_reg = BPF_REG_0,
       .src_reg = 0,
       .off = 0,
       .imm = TC_ACT_OK},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0}};
  const UniqueFd prog(bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "other_pass_all", "GPL", pass_all,
                                    std::size(pass_all), nullptr));
  ASSERT_TRUE(prog) << "load a pass-all program: " << std::strerror(errno);
  LIBBPF_OPTS(bpf_tc_hook, where, .ifindex = static_cast<int>(if_nametoindex(dev.c_str())),
              .attach_point = hook);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog.get(), .flags = BPF_TC_F_REPLACE, .handle = handle,
              .priority = datapath::Config{}.tc_priority);
  ASSERT_EQ(bpf_tc_attach(&where, &opts), 0) << "put a filter on " << dev;
}

}  // namespace sebpf::testing
