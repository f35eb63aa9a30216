#include "daemon/logger.h"

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace sebpf::daemon {

namespace {

// RFC 3339 in UTC with milliseconds.
std::string now_rfc3339() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
  return buf;
}

}  // namespace

void Logger::write(LogLevel level, std::string_view event, std::span<const Field> fields) {
  if (level < min_) return;
  nlohmann::ordered_json line;
  line["time"] = now_rfc3339();
  line["level"] = log_level_name(level);
  line["event"] = event;
  for (const auto& [key, value] : fields) line[std::string(key)] = value;
  // Replace invalid UTF-8 (a hostile interface or cgroup name) instead of
  // throwing: a log line must never take the daemon down.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::lock_guard lock(mu_);
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

}  // namespace sebpf::daemon
