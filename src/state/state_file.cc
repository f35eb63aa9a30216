#include "state/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "common/unique_fd.h"

namespace sebpf::state {
namespace {

// On-disk layout, little-endian: magic[8] | version u32 | length u64 |
// crc32(payload) u32 | payload.
constexpr char kMagic[8] = {'S', 'E', 'B', 'P', 'F', 'S', 'T', '\n'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 8 + 4;
constexpr uint64_t kMaxPayload = 1ULL << 30;

template <typename T>
void put(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

template <typename T>
T get(const char* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}

uint32_t crc_of(std::string_view data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes lengths as uInt: feed large payloads in pieces.
  for (size_t off = 0; off < data.size(); off += 1U << 30) {
    const size_t n = std::min<size_t>(data.size() - off, 1U << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data() + off), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "write " + path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok_status();
}

Error damaged(const std::string& path, const std::string& why) {
  return Error(Errc::kFailedPrecondition,
               "state file " + path + " is damaged (" + why +
                   "); it was not used. Move it aside to start with empty state");
}

// One write of `file` to `path` through a temporary file; `removed` is set
// when the rename finds the temporary file gone.
Status write_once(const std::string& path, const std::string& file, bool& removed) {
  const std::string tmp = path + ".tmp";
  const std::string dir = std::filesystem::path(path).parent_path().string();
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd && errno == ENOENT && !dir.empty()) {
    std::error_code ec;  // a failure shows in the open's error
    std::filesystem::create_directories(dir, ec);
    fd.reset(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  }
  if (!fd) return Error::from_errno(errno, "create " + tmp);
  SEBPF_RETURN_IF_ERROR(write_all(fd.get(), file, tmp));
  if (fsync(fd.get()) != 0) return Error::from_errno(errno, "fsync " + tmp);
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    removed = errno == ENOENT;
    return Error::from_errno(errno, "rename " + tmp + " to " + path);
  }
  // The rename itself must reach the disk, or a crash could bring back the
  // old file after we reported success.
  UniqueFd dfd(open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd || fsync(dfd.get()) != 0) return Error::from_errno(errno, "fsync directory " + dir);
  return ok_status();
}

}  // namespace

Status write_state_file(const std::string& path, std::string_view payload) {
  if (payload.size() > kMaxPayload) {
    return Error(Errc::kResourceExhausted, "state is larger than 1 GiB");
  }
  std::string file(kMagic, sizeof(kMagic));
  put<uint32_t>(file, kVersion);
  put<uint64_t>(file, payload.size());
  put<uint32_t>(file, crc_of(payload));
  file.append(payload);

  // Another program removing the directory between the write and the
  // rename takes the temporary file with it: written once more, into the
  // directory made again (as the daemon puts back what is removed).
  bool removed = false;
  Status written = write_once(path, file, removed);
  if (!written.ok() && removed) written = write_once(path, file, removed);
  return written;
}

Result<std::string> read_state_file(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Error(Errc::kNotFound, "no state file at " + path);
    return Error::from_errno(errno, "open " + path);
  }
  std::string data;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "read " + path);
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kHeaderSize + kMaxPayload) return damaged(path, "larger than any state");
  }
  if (data.size() < kHeaderSize) return damaged(path, "shorter than its header");
  if (std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return damaged(path, "not a Super eBPF state file");
  }
  const auto version = get<uint32_t>(data.data() + 8);
  if (version != kVersion) {
    return damaged(path, "format version " + std::to_string(version) + ", this build reads " +
                             std::to_string(kVersion));
  }
  const auto length = get<uint64_t>(data.data() + 12);
  const auto crc = get<uint32_t>(data.data() + 20);
  if (length != data.size() - kHeaderSize) {
    return damaged(path, "holds " + std::to_string(data.size() - kHeaderSize) +
                             " payload bytes, its header says " + std::to_string(length));
  }
  std::string payload = data.substr(kHeaderSize);
  if (crc_of(payload) != crc) return damaged(path, "checksum mismatch");
  return payload;
}

}  // namespace sebpf::state
