// The daemon's own paths must be out of other users' reach. A user who can
// write the configuration or the policy file chooses the policy; one who
// can write the state, socket or pin directory can replace the state a
// restart adopts, the API socket, or remove the pins that hold the cgroup
// links. Like sshd's StrictModes, a start (and a reload) refuses such
// paths. Not resolv.conf: it is the host's resolver's (systemd-resolved
// owns its own, as its user), and whoever runs that resolver answers the
// host's names anyway.
#pragma once

#include <string>

#include "common/result.h"
#include "daemon/daemon_config.h"

namespace sebpf::daemon {

// Ok when no one but root (or this process's user) can change what `path`
// names: every existing component (a missing rest is the daemon's to make,
// or its reader's to report), from /, is owned by them and writable
// by no other user or group (a group other than root's), except that a
// directory above `path` may be writable by all if it is sticky (/tmp), as
// others can add names there but cannot move ours. A symbolic link counts
// as its owner's, and what it points to is checked too. The error names
// `setting` ("state_dir") and what another user could change through it
// (`at_stake`).
Status check_trusted_path(const std::string& path, const std::string& setting,
                          const std::string& at_stake);

// Every path of `config` (and the configuration file, if one was given).
Status check_trusted_paths(const DaemonConfig& config, const std::string& config_file);

// Makes the state, socket and pin directories where missing (the pin
// directory on a bpffs, mounted if need be), then checks every path again
// (a start calls it after check_trusted_paths, before it uses them). What
// this process makes is root's; a directory another user made between the
// first check and its making (in a sticky directory, or a bpffs mounted
// with mode 1777) is theirs, and refused.
Status make_trusted_directories(const DaemonConfig& config);

}  // namespace sebpf::daemon
