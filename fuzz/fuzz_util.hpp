// Helpers shared by the fuzz targets.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ziprerank::fuzz {

/// A file of this process that each input is written to, for parsers that only take a path.
/// Lives in $TMPDIR, else /dev/shm, else /tmp, and is removed when the process exits normally.
/// A RAM-backed folder matters: ext4 writes a truncated-and-rewritten file back to disk when it
/// is closed, which made the PDF target spend a third of its time in the kernel.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& suffix) {
    const char* env = std::getenv("TMPDIR");
    std::string dir = env && *env ? env : "";
    if (dir.empty()) dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = dir + "/ziprerank_fuzz_" + std::to_string(::getpid()) + suffix;
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  /// Replaces the file's content; aborts when it cannot (the harness is broken, not the input).
  const std::string& write(const uint8_t* data, size_t size) const {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Stops the run, reported by libFuzzer as a crash: an invariant of an accepted input failed.
[[noreturn]] inline void invariant_failed(const char* what) {
  std::fprintf(stderr, "fuzz invariant failed: %s\n", what);
  std::abort();
}

}  // namespace ziprerank::fuzz

#define FUZZ_CHECK(cond)                                     \
  do {                                                       \
    if (!(cond)) ::ziprerank::fuzz::invariant_failed(#cond); \
  } while (0)
