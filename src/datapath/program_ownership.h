// Telling our BPF programs from another's, by the kernel's program ids: a
// TC filter at our handle and priority may have been replaced in place
// (`tc filter replace`) by another program, which then runs instead of
// ours with nothing else to show for it; another program's filter may run
// ahead of ours.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sebpf::datapath {

// The kernel's id of the program behind `prog_fd`; 0 if it cannot tell.
uint32_t program_id(int prog_fd);

class ProgramOwnership {
 public:
  explicit ProgramOwnership(const std::vector<int>& program_fds);

  // Whether the program with this id is one of ours, or bears the name of
  // one of ours: that of another superebpfd (an earlier process of this
  // one, or a second daemon on the host). Two daemons that each put back
  // their own filter in place of the other's would do so without end; a
  // second daemon in one namespace is the operator's mistake, not ours to
  // fight. A program that cannot be looked up (gone already) is not ours.
  bool is_ours(uint32_t id) const;

 private:
  std::vector<uint32_t> ids_;
  std::vector<std::string> names_;  // as the kernel keeps them: cut short
};

}  // namespace sebpf::datapath
