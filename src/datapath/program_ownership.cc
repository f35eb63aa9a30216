#include "datapath/program_ownership.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/unique_fd.h"

namespace sebpf::datapath {
namespace {

std::optional<bpf_prog_info> program_info(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return std::nullopt;
  return info;
}

std::string name_of(const bpf_prog_info& info) {
  return std::string(info.name, strnlen(info.name, sizeof info.name));
}

}  // namespace

uint32_t program_id(int prog_fd) {
  const auto info = program_info(prog_fd);
  return info ? info->id : 0;
}

ProgramOwnership::ProgramOwnership(const std::vector<int>& program_fds) {
  for (const int fd : program_fds) {
    if (const auto info = program_info(fd)) {
      ids_.push_back(info->id);
      names_.push_back(name_of(*info));
    }
  }
}

bool ProgramOwnership::is_ours(uint32_t id) const {
  if (std::find(ids_.begin(), ids_.end(), id) != ids_.end()) return true;
  const UniqueFd prog(bpf_prog_get_fd_by_id(id));
  if (!prog) return false;
  const auto info = program_info(prog.get());
  return info && std::find(names_.begin(), names_.end(), name_of(*info)) != names_.end();
}

}  // namespace sebpf::datapath
