// Invariant checks for the fuzz targets: a failed check prints the condition
// and the input (escaped, cut at 200 bytes) and aborts, which libFuzzer
// reports as a crash and saves as a crash-* file.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"

namespace diyc::fuzz {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* condition, absl::string_view input) {
  std::fprintf(stderr, "%s:%d: check failed: %s\ninput (%zu bytes): '", file, line, condition, input.size());
  for (unsigned char c : input.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      std::fputc(c, stderr);
    } else {
      std::fprintf(stderr, "\\x%02x", c);
    }
  }
  std::fprintf(stderr, "'%s\n", input.size() > 200 ? "..." : "");
  std::abort();
}

}  // namespace diyc::fuzz

// Aborts unless `condition` holds; `input` is what the message shows.
#define FUZZ_CHECK(condition, input)                                                  \
  do {                                                                                \
    if (!(condition)) ::diyc::fuzz::CheckFailed(__FILE__, __LINE__, #condition, input); \
  } while (0)
