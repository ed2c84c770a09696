// ImportTar on arbitrary archives, extracted into a fresh destination inside
// a per-process scratch directory that also holds the archive and an empty
// sentinel directory. After every import nothing may exist outside the
// destination: the scratch directory holds exactly what it held before, the
// sentinel stays empty and the canaries under /tmp (where a symlink escape
// towards "/tmp" or "../../tmp" would write) do not appear. A failed
// import leaves no destination; a successful one is removed with RemoveTree.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "diyc/netcore/image.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_scratch.h"

namespace {

// Names the seed corpus uses for escape attempts.
constexpr const char* kCanaries[] = {"/tmp/diyc-fuzz-escape", "/dev/shm/diyc-fuzz-escape"};

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) std::abort();
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string scratch = diyc::fuzz::ScratchDir("fuzz-tar");
  static const std::string sentinel = scratch + "/sentinel";
  static const std::string archive = scratch + "/archive.tar";
  static const std::string dest = scratch + "/dest";
  static const bool made = [] {
    if (::mkdir(sentinel.c_str(), 0755) != 0) std::abort();
    for (const char* canary : kCanaries) {
      if (Exists(canary)) {
        std::fprintf(stderr, "fuzz_tar: %s exists before fuzzing; remove it first\n", canary);
        std::abort();
      }
    }
    return true;
  }();
  (void)made;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  const int fd = ::open(archive.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FUZZ_CHECK(fd >= 0, input);
  FUZZ_CHECK(::write(fd, data, size) == static_cast<ssize_t>(size), input);
  ::close(fd);

  diyc::netcore::ImportOptions options;
  options.max_bytes = 1 << 20;
  options.max_entries = 256;
  absl::StatusOr<diyc::netcore::ImageStats> stats = diyc::netcore::ImportTar(archive, dest, options);

  // Nothing outside the destination.
  static const std::vector<std::string> kBefore = {"archive.tar", "sentinel"};
  static const std::vector<std::string> kAfter = {"archive.tar", "dest", "sentinel"};
  FUZZ_CHECK(List(scratch) == (stats.ok() ? kAfter : kBefore), input);
  FUZZ_CHECK(List(sentinel).empty(), input);
  for (const char* canary : kCanaries) FUZZ_CHECK(!Exists(canary), input);

  if (stats.ok()) {
    FUZZ_CHECK(stats->bytes <= options.max_bytes, input);
    FUZZ_CHECK(stats->files + stats->directories + stats->symlinks + stats->hard_links + stats->skipped <=
                   options.max_entries,
               input);
    struct stat st;
    FUZZ_CHECK(::lstat(dest.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755, input);
    const absl::Status removed = diyc::netcore::RemoveTree(dest);
    FUZZ_CHECK(removed.ok(), input);
    FUZZ_CHECK(!Exists(dest), input);
  }
  return 0;
}
