#include "datapath/netns_events.h"

#include <cerrno>

#include "datapath/shared_layout.h"

namespace sebpf::datapath {

Result<std::unique_ptr<NetnsEvents>> NetnsEvents::open(UniqueFd ring_map) {
  std::unique_ptr<NetnsEvents> self(new NetnsEvents(std::move(ring_map)));
  self->ring_ = ring_buffer__new(self->map_.get(), &NetnsEvents::on_event, self.get(), nullptr);
  if (self->ring_ == nullptr) {
    return Error::from_errno(errno, "read the ring buffer of network namespace reports");
  }
  return self;
}

NetnsEvents::~NetnsEvents() { ring_buffer__free(ring_); }

int NetnsEvents::fd() const { return ring_buffer__epoll_fd(ring_); }

int NetnsEvents::on_event(void* self, void* data, size_t size) {
  if (size < sizeof(sebpf_netns_event)) return 0;  // not ours to read: skipped
  const auto* event = static_cast<const sebpf_netns_event*>(data);
  static_cast<NetnsEvents*>(self)->reported_.insert(event->cgroup);
  return 0;
}

Result<std::set<uint64_t>> NetnsEvents::take() {
  reported_.clear();
  if (const int err = ring_buffer__consume(ring_); err < 0) {
    return Error::from_errno(-err, "read network namespace reports");
  }
  return std::move(reported_);
}

}  // namespace sebpf::datapath
