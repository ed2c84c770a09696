#include "container_log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "diyc/netcore/errors.h"

namespace diyc::server {

void ContainerLogWriter::Write(v1::LogChunk::Stream stream, const char* data, size_t size) {
  uint8_t header[5];
  header[0] = static_cast<uint8_t>(stream);
  const uint32_t len = static_cast<uint32_t>(size);
  for (int i = 0; i < 4; ++i) header[1 + i] = static_cast<uint8_t>(len >> (8 * i));
  iovec iov[2] = {{header, sizeof(header)}, {const_cast<char*>(data), size}};
  // O_APPEND and one writev per frame keep frames whole.
  (void)!writev(fd_, iov, 2);
}

absl::StatusOr<std::vector<v1::LogChunk>> ReadLogFrames(int fd, uint64_t* offset, size_t max_bytes) {
  std::vector<v1::LogChunk> chunks;
  // Frames past the size seen here are left for the next call, and a header
  // claiming more data than the file holds (up to 4 GiB) allocates nothing.
  struct stat st;
  if (fstat(fd, &st) != 0) return netcore::ErrnoError(errno, "stat container log");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  size_t total = 0;
  while (total < max_bytes) {
    uint8_t header[5];
    ssize_t n = pread(fd, header, sizeof(header), static_cast<off_t>(*offset));
    if (n < 0) return netcore::ErrnoError(errno, "read container log");
    if (n < static_cast<ssize_t>(sizeof(header))) break;
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<uint32_t>(header[1 + i]) << (8 * i);
    if (size < *offset + sizeof(header) + len) break;
    std::string data(len, '\0');
    n = pread(fd, data.data(), len, static_cast<off_t>(*offset + sizeof(header)));
    if (n < 0) return netcore::ErrnoError(errno, "read container log");
    if (static_cast<uint32_t>(n) < len) break;
    v1::LogChunk chunk;
    chunk.set_stream(header[0] == v1::LogChunk::STDERR ? v1::LogChunk::STDERR : v1::LogChunk::STDOUT);
    chunk.set_data(std::move(data));
    chunks.push_back(std::move(chunk));
    *offset += sizeof(header) + len;
    total += len;
  }
  return chunks;
}

}  // namespace diyc::server
