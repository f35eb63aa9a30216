// A reload (SIGHUP) replaces the daemon with a fresh copy of its binary
// in the same process (execve), handing over its API socket and its DNS
// endpoints' sockets: enforcement stays in the kernel as across any
// restart, and neither the API's socket nor an endpoint's port closes.
// Connections and queries that arrive meanwhile wait in the sockets'
// queues for the new process.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "daemon/api_listener.h"
#include "dns/inherited_sockets.h"

namespace sebpf::daemon {

// The environment variables that carry the descriptors over the execve:
// decimal descriptor numbers, comma-separated ("3,4,7").
inline constexpr const char* kHandedOverApiVariable = "SUPEREBPF_API_SOCKET";
inline constexpr const char* kHandedOverDnsVariable = "SUPEREBPF_DNS_SOCKETS";
// Set ("1") when the API socket is systemd's (InheritedListener::from_systemd).
inline constexpr const char* kApiSocketFromSystemdVariable = "SUPEREBPF_API_SOCKET_FROM_SYSTEMD";

// The descriptors `variable` holds as `text`; an error naming what is
// wrong (nothing taken).
Result<std::vector<int>> parse_descriptor_list(std::string_view variable, std::string_view text);

// The path this process's binary was started from: what a reload runs,
// so that an upgrade that replaced the file is what runs next.
Result<std::string> own_executable();

// What the process before handed over.
struct HandedOver {
  InheritedListener api_listener;              // fd invalid: none
  std::unique_ptr<dns::InheritedSockets> dns;  // null: none
};

// Takes what the process before handed over, removing the variables from
// the environment. Descriptors that are not open or not an endpoint's
// socket, and malformed variables, are left out, each with the reason in
// `problems`.
HandedOver take_handed_over(std::vector<std::string>& problems);

// What a reload hands over.
struct HandOver {
  InheritedListener api_listener;
  std::vector<UniqueFd> dns_sockets;
};

// Runs `executable` in this process with `argv` and the environment, the
// sockets handed over. Returns only if execve failed.
Error reexec(const std::string& executable, char** argv, HandOver sockets);

}  // namespace sebpf::daemon
