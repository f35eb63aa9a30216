#include "common/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace sebpf {

Result<std::string> read_text_file(const std::string& path, std::string_view what) {
  const std::string name = std::string(what) + " " + path;
  // Non-blocking: a FIFO there must be refused, not wait for a writer.
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return Error::from_errno(errno, "open " + name);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Error::from_errno(errno, "stat " + name);
  if (!S_ISREG(st.st_mode)) {
    return Error(Errc::kInvalidArgument, name + " is not a regular file");
  }
  const Error too_large(
      Errc::kInvalidArgument,
      name + " is larger than " + std::to_string(kMaxTextFileBytes >> 20) + " MiB");
  if (st.st_size > static_cast<off_t>(kMaxTextFileBytes)) return too_large;
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t n = read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "read " + name);
    if (n == 0) return text;
    // It may grow while it is read.
    if (text.size() + static_cast<size_t>(n) > kMaxTextFileBytes) return too_large;
    text.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace sebpf
