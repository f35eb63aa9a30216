// Where libbpf's own messages go. libbpf has one process-wide print hook;
// we install it once so its debug chatter stays out and its warnings
// (including the kernel verifier's log on a failed load) are seen: on
// stderr as libbpf writes them, or, while a LibbpfLogSink lives (the
// daemon's), as that sink's.
#pragma once

#include <functional>
#include <string_view>

namespace sebpf::datapath {

void install_libbpf_logger();

// While it lives, libbpf's messages go to `sink`, each whole (a verifier
// log is one), without its last newline, with whether libbpf called it a
// warning (else information). One at a time.
class LibbpfLogSink {
 public:
  using Sink = std::function<void(bool warning, std::string_view message)>;
  explicit LibbpfLogSink(Sink sink);
  ~LibbpfLogSink();
  LibbpfLogSink(const LibbpfLogSink&) = delete;
  LibbpfLogSink& operator=(const LibbpfLogSink&) = delete;
};

}  // namespace sebpf::datapath
