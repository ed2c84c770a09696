// The container log: stdout and stderr interleaved in the order they were
// written, as frames of [stream: 1 byte][length: 4 bytes, little endian][data].
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "diyc/v1/container.pb.h"

namespace diyc::server {

class ContainerLogWriter {
 public:
  explicit ContainerLogWriter(int fd) : fd_(fd) {}
  // Best effort: a full disk loses output, never stalls the container.
  void Write(v1::LogChunk::Stream stream, const char* data, size_t size);

 private:
  int fd_;
};

// Reads the complete frames from `offset` on (at most max_bytes of data);
// returns them and advances offset past them. A partly written frame at the
// end is left for the next call.
absl::StatusOr<std::vector<v1::LogChunk>> ReadLogFrames(int fd, uint64_t* offset, size_t max_bytes);

}  // namespace diyc::server
