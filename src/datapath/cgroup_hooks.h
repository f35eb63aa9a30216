// Attaching the cgroup programs (connect4/6, sendmsg4/6, cgroup_skb egress
// and ingress) to one cgroup as bpf_links, pinned so they outlive us.
#pragma once

#include <bpf/bpf.h>

#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "datapath/types.h"

namespace sebpf::datapath {

// One program of the set every attached cgroup gets: loaded by this
// process or by an earlier one (pinned), so known by descriptor.
struct CgroupProgram {
  std::string name;  // also its link's pin name
  int fd = -1;
  bpf_attach_type hook{};
};

class CgroupHooks {
 public:
  // links_dir: where links are pinned, one directory per cgroup; empty to
  // pin nothing (links then live as long as this object).
  CgroupHooks(std::vector<CgroupProgram> programs, std::string links_dir);

  // All programs or none.
  Status attach(uint64_t cgroup_id, int cgroup_fd);
  // Detaches even when the cgroup is gone already.
  Status detach(uint64_t cgroup_id);

  // Takes over the pinned links of an earlier process and switches each to
  // our programs (if it is not on them already), atomically per link.
  // Cgroups whose links are incomplete or whose cgroup is gone are
  // detached instead.
  struct Adopted {
    std::vector<uint64_t> live;
    std::map<uint64_t, std::string> dropped;  // cgroup id -> why
    std::vector<AdoptionNote> notes;          // links kept on old programs
  };
  Result<Adopted> adopt();

  // A link lives as long as its pin (we hold no descriptor): another
  // program that removes a pin detaches that program from the cgroup, as
  // does one that detaches the link (BPF_LINK_DETACH), which leaves the
  // pin; one that puts its own program in the link (BPF_LINK_UPDATE)
  // leaves it on the cgroup, running that program. Attaches and pins
  // again each program of an attached cgroup whose pin is gone or whose
  // link is detached, and puts ours back in a link that runs another;
  // the names of those.
  Result<std::vector<std::string>> restore(uint64_t cgroup_id, int cgroup_fd);
  // Whether a link of this cgroup is missing (its pin gone, or the link
  // detached) or runs another program: restore() has work.
  bool links_missing(uint64_t cgroup_id) const;

  // Where a cgroup's links are pinned; empty when nothing is pinned.
  std::string dir_for(uint64_t cgroup_id) const;

 private:
  std::vector<CgroupProgram> programs_;
  std::vector<uint32_t> program_ids_;  // by programs_ index; 0 if unknown
  std::string links_dir_;
  // Unpinned mode only: the links exist as long as we hold them.
  std::map<uint64_t, std::vector<UniqueFd>> links_;
};

}  // namespace sebpf::datapath
