// A streaming reader for tar archives: POSIX ustar, GNU long names ('L'/'K')
// and pax extended headers ('x'/'g'). It only parses; it never touches the
// filesystem, so every name it returns is untrusted and must be checked by
// the caller before use.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace diyc::netcore {

enum class TarEntryType {
  kFile,  // '0', '\0', '7' (contiguous: an ordinary file on Linux)
  kHardLink,
  kSymlink,
  kDirectory,
  kCharDevice,
  kBlockDevice,
  kFifo,
  kOther,  // volume labels and types this reader does not know
};

struct TarEntry {
  TarEntryType type = TarEntryType::kOther;
  char typeflag = 0;
  std::string path;         // as stored: may be absolute or contain "..".
  std::string link_target;  // symlink target or hard link name
  uint32_t mode = 0;        // permission bits only (07777)
  uint64_t uid = 0;
  uint64_t gid = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;  // bytes of data that follow the header
};

// Parses a tar number field: octal ASCII (optionally space/NUL padded) or
// GNU base-256 (first byte 0x80). Negative base-256 values are rejected.
absl::StatusOr<uint64_t> ParseTarNumber(absl::string_view field);

// Parses pax records ("<len> <key>=<value>\n") into `out`; an empty value
// is kept as "" (it means "unset" to the caller).
absl::Status ParsePaxRecords(absl::string_view data, std::map<std::string, std::string>& out);

// Reads entries from a file descriptor it does not own. Not thread-safe.
class TarReader {
 public:
  // `known_size` is the archive size if it is a regular file (0 when it is a
  // stream); it lets a header that claims more data than remains be
  // rejected before anything is written.
  TarReader(int fd, uint64_t known_size);

  // Reads the next entry, following GNU and pax extension headers. Returns
  // false at the end-of-archive marker. Data of the previous entry that was
  // not consumed is skipped. Truncation and corrupt headers are DATA_LOSS;
  // a first block that is no tar header is INVALID_ARGUMENT.
  absl::StatusOr<bool> Next(TarEntry& entry);

  // Copies the current entry's data to `out_fd`. Call at most once per entry.
  absl::Status CopyData(int out_fd);

  // Bytes of the archive consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  // Reads up to `n` bytes; fewer only at end of file.
  absl::StatusOr<size_t> ReadUpTo(char* dst, size_t n);
  // Reads exactly `n` bytes or fails with DATA_LOSS.
  absl::Status ReadExact(char* dst, size_t n);
  absl::Status Skip(uint64_t n);
  absl::Status Fill();
  absl::StatusOr<std::string> ReadMetaData(uint64_t size);

  int fd_;
  uint64_t known_size_;
  std::vector<char> buf_;
  size_t buf_pos_ = 0;
  size_t buf_len_ = 0;
  bool eof_ = false;
  uint64_t offset_ = 0;
  uint64_t data_left_ = 0;  // of the current entry
  uint64_t padding_ = 0;    // after the current entry's data
  bool first_header_ = true;
  std::map<std::string, std::string> global_pax_;
};

}  // namespace diyc::netcore
