// Reads what the socket hooks report: a call from an attached cgroup's
// process in a network namespace other than the one its attachment is
// watched in (Datapath::watch_workload_netns). The reader owns its ring
// buffer consumer and may live on a thread of its own, apart from the
// Datapath that made the map.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <memory>
#include <set>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sebpf::datapath {

class NetnsEvents {
 public:
  // Reads the ring buffer `ring_map` (Datapath::netns_events_map).
  static Result<std::unique_ptr<NetnsEvents>> open(UniqueFd ring_map);
  NetnsEvents(const NetnsEvents&) = delete;
  NetnsEvents& operator=(const NetnsEvents&) = delete;
  ~NetnsEvents();

  // Readable (poll) when reports wait.
  int fd() const;
  // The cgroups (ids) reported since the last call, each once.
  Result<std::set<uint64_t>> take();

 private:
  explicit NetnsEvents(UniqueFd ring_map) : map_(std::move(ring_map)) {}
  static int on_event(void* self, void* data, size_t size);

  UniqueFd map_;
  ring_buffer* ring_ = nullptr;
  std::set<uint64_t> reported_;  // filled by on_event during take()
};

}  // namespace sebpf::datapath
