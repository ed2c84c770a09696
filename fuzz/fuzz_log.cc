// ReadLogFrames over arbitrary bytes as a container log file. The frames it
// returns must be exactly the complete frames at the start of the file (as
// a reference parser reads them), the offset must end right after the last
// of them, and reading in small steps must give the same frames as one read.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "diyc/v1/container.pb.h"
#include "fuzz/fuzz_check.h"
#include "server/container_log.h"

namespace {

struct Frame {
  bool stderr_stream;
  std::string data;
};

// Complete frames of [stream][length, 4 bytes little endian][data].
std::vector<Frame> ReferenceFrames(absl::string_view bytes, uint64_t* end) {
  std::vector<Frame> frames;
  size_t pos = 0;
  while (bytes.size() - pos >= 5) {
    uint64_t len = 0;
    for (int i = 0; i < 4; ++i) len |= uint64_t{static_cast<unsigned char>(bytes[pos + 1 + i])} << (8 * i);
    if (bytes.size() - pos - 5 < len) break;
    frames.push_back({bytes[pos] == static_cast<char>(diyc::v1::LogChunk::STDERR),
                      std::string(bytes.substr(pos + 5, len))});
    pos += 5 + len;
  }
  *end = pos;
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int made = ::memfd_create("diyc-fuzz-log", MFD_CLOEXEC);
    if (made < 0) std::abort();
    return made;
  }();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  FUZZ_CHECK(::ftruncate(fd, 0) == 0, input);
  FUZZ_CHECK(::pwrite(fd, data, size, 0) == static_cast<ssize_t>(size), input);

  uint64_t expected_end = 0;
  const std::vector<Frame> expected = ReferenceFrames(input, &expected_end);

  // One read with room for everything.
  uint64_t offset = 0;
  absl::StatusOr<std::vector<diyc::v1::LogChunk>> all = diyc::server::ReadLogFrames(fd, &offset, size_t{1} << 30);
  FUZZ_CHECK(all.ok(), input);
  FUZZ_CHECK(offset == expected_end, input);
  FUZZ_CHECK(all->size() == expected.size(), input);
  for (size_t i = 0; i < expected.size(); ++i) {
    FUZZ_CHECK((*all)[i].data() == expected[i].data, input);
    FUZZ_CHECK(((*all)[i].stream() == diyc::v1::LogChunk::STDERR) == expected[i].stderr_stream, input);
  }

  // Small steps from the start give the same frames and end at the same offset.
  uint64_t step_offset = 0;
  size_t frames = 0;
  std::string joined, expected_joined;
  for (const Frame& f : expected) expected_joined += f.data;
  while (true) {
    const uint64_t before = step_offset;
    absl::StatusOr<std::vector<diyc::v1::LogChunk>> some = diyc::server::ReadLogFrames(fd, &step_offset, 7);
    FUZZ_CHECK(some.ok(), input);
    for (const diyc::v1::LogChunk& chunk : *some) joined += chunk.data();
    frames += some->size();
    if (some->empty()) {
      FUZZ_CHECK(step_offset == before, input);
      break;
    }
    FUZZ_CHECK(step_offset > before, input);
  }
  FUZZ_CHECK(step_offset == expected_end, input);
  FUZZ_CHECK(frames == expected.size(), input);
  FUZZ_CHECK(joined == expected_joined, input);
  return 0;
}
