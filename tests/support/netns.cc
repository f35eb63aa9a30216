#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "process.h"

namespace sebpf::testing {

NetNs::NetNs(std::string name) : name_(std::move(name)) {
  run_command({"ip", "netns", "del", name_});
  must_run({"ip", "netns", "add", name_});
  must_run({"ip", "-n", name_, "link", "set", "lo", "up"});
}

NetNs::~NetNs() { run_command({"ip", "netns", "del", name_}); }

bool NetNs::enter() const {
  const std::string path = "/run/netns/" + name_;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

VethPair::VethPair(std::string host, std::string peer, const NetNs& ns)
    : host_(std::move(host)), peer_(std::move(peer)) {
  run_command({"ip", "link", "del", host_});
  must_run({"ip", "link", "add", host_, "type", "veth", "peer", "name", peer_, "netns", ns.name()});
  must_run({"ip", "link", "set", host_, "up"});
  must_run({"ip", "-n", ns.name(), "link", "set", peer_, "up"});
}

VethPair::~VethPair() { run_command({"ip", "link", "del", host_}); }

Bridge::Bridge(std::string name) : name_(std::move(name)) {
  run_command({"ip", "link", "del", name_});
  must_run({"ip", "link", "add", name_, "type", "bridge"});
  must_run({"ip", "link", "set", name_, "up"});
}

Bridge::~Bridge() { run_command({"ip", "link", "del", name_}); }

void Bridge::add_port(const std::string& interface) const {
  must_run({"ip", "link", "set", "dev", interface, "master", name_});
}

void rename_link(const std::string& from, const std::string& to) {
  must_run({"ip", "link", "set", "dev", from, "down"});
  must_run({"ip", "link", "set", "dev", from, "name", to});
  must_run({"ip", "link", "set", "dev", to, "up"});
}

void add_address(const std::string& ns, const std::string& dev, const std::string& cidr) {
  std::vector<std::string> argv = {"ip"};
  if (!ns.empty()) argv.insert(argv.end(), {"-n", ns});
  argv.insert(argv.end(), {"addr", "add", cidr, "dev", dev});
  if (cidr.find(':') != std::string::npos) argv.push_back("nodad");
  must_run(argv);
}

}  // namespace sebpf::testing
