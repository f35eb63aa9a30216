#include "daemon/fd_store.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstring>

namespace sebpf::daemon {

namespace {

constexpr std::string_view kEndpointPrefix = "dns-";
// The kernel's limit of descriptors in one message (SCM_MAX_FD).
constexpr size_t kMostFdsPerMessage = 253;

}  // namespace

std::string endpoint_store_name(uint64_t attachment) {
  return std::string(kEndpointPrefix) + std::to_string(attachment);
}

bool is_endpoint_store_name(std::string_view name) {
  return name.size() > kEndpointPrefix.size() && name.starts_with(kEndpointPrefix) &&
         std::all_of(name.begin() + kEndpointPrefix.size(), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

bool FdStore::notify(const std::string& state, std::span<const int> fds) {
  const int sent = sd_pid_notify_with_fds(0, /*unset_environment=*/0, state.c_str(), fds.data(),
                                          static_cast<unsigned>(fds.size()));
  if (sent > 0) return true;
  if (sent == 0) return false;  // not under systemd
  if (!warned_) {
    warned_ = true;
    log_.warning(
        "fd_store_failed",
        {{"error", std::strerror(-sent)},
         {"impact", "across a restart, the API and DNS close until the next process serves"}});
  }
  return false;
}

bool FdStore::put(const std::string& name, std::span<const int> fds) {
  std::lock_guard lock(mu_);
  put_.insert(name);
  // Stored descriptors add up under one name: what it held goes first.
  bool told = notify("FDSTOREREMOVE=1\nFDNAME=" + name, {});
  for (size_t first = 0; told && first < fds.size(); first += kMostFdsPerMessage) {
    const size_t count = std::min(kMostFdsPerMessage, fds.size() - first);
    told = notify("FDSTORE=1\nFDNAME=" + name, fds.subspan(first, count));
  }
  return told;
}

void FdStore::forget_all_but_put(const std::vector<std::string>& names) {
  std::lock_guard lock(mu_);
  std::set<std::string> forgotten;
  for (const std::string& name : names) {
    if (put_.contains(name) || !forgotten.insert(name).second) continue;
    notify("FDSTOREREMOVE=1\nFDNAME=" + name, {});
  }
}

}  // namespace sebpf::daemon
