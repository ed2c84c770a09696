// A scratch directory private to one fuzzing process, made on first use
// under $TMPDIR (else /dev/shm, else /tmp) and removed when the process exits
// normally. A crashed run leaves it behind for inspection; ci/sanitize.sh
// points TMPDIR at a directory it removes itself.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "diyc/netcore/image.h"

namespace diyc::fuzz {

inline const std::string& ScratchDir(const char* tag) {
  static const std::string dir = [tag] {
    const char* base = std::getenv("TMPDIR");
    struct stat st;
    if (base == nullptr || *base == '\0') base = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    std::string templ = std::string(base) + "/diyc-" + tag + "-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return templ;
  }();
  static const bool registered = [] {
    std::atexit([] { (void)netcore::RemoveTree(dir); });
    return true;
  }();
  (void)registered;
  return dir;
}

}  // namespace diyc::fuzz
