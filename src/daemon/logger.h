// Structured logs: one JSON object a line on stderr (journald keeps it as
// is), with a time, a level, an event name and the event's fields, so
// refusals and detaches can be found and counted by machines.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "daemon/daemon_config.h"

namespace sebpf::daemon {

class Logger {
 public:
  using Field = std::pair<std::string_view, std::string>;
  using Fields = std::initializer_list<Field>;

  explicit Logger(LogLevel min_level, std::FILE* out = stderr) : min_(min_level), out_(out) {}

  void log(LogLevel level, std::string_view event, Fields fields = {}) {
    write(level, event, std::span<const Field>(fields.begin(), fields.size()));
  }
  // For fields gathered at run time.
  void write(LogLevel level, std::string_view event, std::span<const Field> fields);
  void debug(std::string_view event, Fields fields = {}) { log(LogLevel::kDebug, event, fields); }
  void info(std::string_view event, Fields fields = {}) { log(LogLevel::kInfo, event, fields); }
  void warning(std::string_view event, Fields fields = {}) {
    log(LogLevel::kWarning, event, fields);
  }
  void error(std::string_view event, Fields fields = {}) { log(LogLevel::kError, event, fields); }

 private:
  LogLevel min_;
  std::FILE* out_;
  std::mutex mu_;
};

}  // namespace sebpf::daemon
