// Attaching the cgroup programs (connect4/6, sendmsg4/6, cgroup_skb egress
// and ingress) to one cgroup as bpf_links, pinned so they outlive us.
#pragma once

#include <bpf/libbpf.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace sebpf::datapath {

struct LinkDeleter {
  void operator()(bpf_link* link) const { bpf_link__destroy(link); }
};
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;

class CgroupHooks {
 public:
  // links_dir: where links are pinned, one directory per cgroup; empty to
  // pin nothing (links then live as long as this object).
  CgroupHooks(std::vector<bpf_program*> programs, std::string links_dir);

  // All programs or none.
  Status attach(uint64_t cgroup_id, int cgroup_fd);
  // Detaches even when the cgroup is gone already.
  Status detach(uint64_t cgroup_id);

  // Takes over the pinned links of an earlier process and switches each to
  // our programs, atomically per link. Cgroups whose links are incomplete
  // or whose cgroup is gone are detached instead.
  struct Adopted {
    std::vector<uint64_t> live;
    std::map<uint64_t, std::string> dropped;  // cgroup id -> why
    std::vector<std::string> notes;           // links kept on old programs
  };
  Result<Adopted> adopt();

 private:
  std::string dir_for(uint64_t cgroup_id) const;

  std::vector<bpf_program*> programs_;
  std::string links_dir_;
  // Unpinned mode only: the links exist as long as we hold them.
  std::map<uint64_t, std::vector<LinkPtr>> links_;
};

}  // namespace sebpf::datapath
