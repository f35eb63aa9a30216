#include "support/knot_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/dns_client.h"

namespace sebpf::testing {

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

bool can_bind(int type, uint16_t port) {
  const int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(port);
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0;
  close(fd);
  return ok;
}

}  // namespace

uint16_t KnotServer::free_port() {
  for (int i = 0; i < 10000; ++i) {
    const auto port = static_cast<uint16_t>(10000 + (getpid() + i) % 10000);
    if (can_bind(SOCK_STREAM, port) && can_bind(SOCK_DGRAM, port)) return port;
  }
  ADD_FAILURE() << "no free port for knotd in 10000-19999";
  return 0;
}

KnotServer::KnotServer(const std::string& dir, uint16_t port,
                       const std::map<std::string, std::string>& zones)
    : dir_(dir),
      control_socket_(dir + "/knot.sock"),
      address_(*net::IpAddress::parse("127.0.0.1"), port) {
  std::filesystem::create_directories(dir_ + "/db");
  std::ostringstream conf;
  conf << "server:\n"
       << "  user: root:root\n"
       << "  listen: 127.0.0.1@" << port << "\n"
       << "  rundir: " << dir_ << "\n"
       << "log:\n  - target: " << dir_
       << "/knotd.log\n    any: info\n"
       // Its databases (zone timers, journal) here too: by default they
       // are shared under /var/lib/knot, where a killed server's stale
       // reader slots would pile up across runs.
       << "database:\n  storage: " << dir_ << "/db\n"
       << "mod-dnstap:\n  - id: queries\n    sink: " << dir_ << "/queries.tap\n"
       << "    log-queries: on\n    log-responses: off\n"
       << "template:\n  - id: default\n    storage: " << dir_ << "\n"
       << "    global-module: mod-dnstap/queries\n"
       << "zone:\n";
  int n = 0;
  for (const auto& [origin, text] : zones) {
    const std::string file = "zone" + std::to_string(n++) + ".txt";
    write_file(dir_ + "/" + file, "$ORIGIN " + origin + "\n" + text);
    conf << "  - domain: " << origin << "\n    file: " << file << "\n";
  }
  write_file(dir_ + "/knot.conf", conf.str());
  const std::string conf_path = dir_ + "/knot.conf";
  const std::string socket = control_socket_;
  child_ = std::make_unique<Child>([conf_path, socket] {
    execlp("knotd", "knotd", "-c", conf_path.c_str(), "-s", socket.c_str(),
           static_cast<char*>(nullptr));
    return 127;
  });
  // Up when it answers the first zone's SOA.
  const std::string first = zones.begin()->first;
  const std::string apex = first.substr(0, first.size() - 1);
  for (int i = 0; i < 100; ++i) {
    auto answer = dns_query(address_, make_query(apex, 6), false, std::chrono::milliseconds(100));
    if (answer.ok() && !answer->message.answers.empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream log(dir_ + "/knotd.log");
  std::stringstream text;
  text << log.rdbuf();
  ADD_FAILURE() << "knotd did not come up on " << address_.to_string() << ":\n" << text.str();
}

KnotServer::~KnotServer() {
  if (child_) {
    run_command({"knotc", "-s", control_socket_, "stop"});
    if (child_->wait(std::chrono::seconds(5)) != 0) child_->kill_now();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string KnotServer::stop_and_read_query_log() {
  if (child_) {
    run_command({"knotc", "-s", control_socket_, "stop"});
    if (child_->wait(std::chrono::seconds(10)) != 0) ADD_FAILURE() << "knotd did not stop cleanly";
    child_.reset();
  }
  std::ifstream in(dir_ + "/queries.tap", std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

bool KnotServer::log_has_query(const std::string& log, std::string_view name) {
  const std::vector<uint8_t> wire = wire_name(name);
  return log.find(std::string(wire.begin(), wire.end())) != std::string::npos;
}

}  // namespace sebpf::testing
