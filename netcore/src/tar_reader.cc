#include "tar_reader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::netcore {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kBufferSize = 128 * 1024;
// Extension headers are read into memory; real ones are a few hundred bytes.
constexpr uint64_t kMaxMetaSize = 1 << 20;
// Bounds the headers read before a real entry, so a stream of pax globals
// cannot keep the reader busy without producing entries.
constexpr int kMaxMetaHeaders = 64;
// Keeps offset arithmetic far from overflow; no real entry comes close.
constexpr uint64_t kMaxEntrySize = uint64_t{1} << 62;

// ustar header layout (POSIX.1-1988), shared by GNU tar.
constexpr size_t kNameOff = 0, kNameLen = 100;
constexpr size_t kModeOff = 100, kModeLen = 8;
constexpr size_t kUidOff = 108, kUidLen = 8;
constexpr size_t kGidOff = 116, kGidLen = 8;
constexpr size_t kSizeOff = 124, kSizeLen = 12;
constexpr size_t kMtimeOff = 136, kMtimeLen = 12;
constexpr size_t kChksumOff = 148, kChksumLen = 8;
constexpr size_t kTypeOff = 156;
constexpr size_t kLinkOff = 157, kLinkLen = 100;
constexpr size_t kMagicOff = 257;
constexpr size_t kPrefixOff = 345, kPrefixLen = 155;

absl::string_view Field(const char* block, size_t off, size_t len) { return absl::string_view(block + off, len); }

// The bytes up to the first NUL.
std::string CString(absl::string_view field) {
  size_t nul = field.find('\0');
  return std::string(field.substr(0, nul));
}

bool IsZeroBlock(const char* block) {
  return std::all_of(block, block + kBlock, [](char c) { return c == 0; });
}

// Names the compression when the first bytes carry a well-known magic, so
// the error tells the user what to do instead of just "not a tar archive".
absl::string_view CompressionHint(const char* block) {
  auto starts = [&](absl::string_view magic) { return std::memcmp(block, magic.data(), magic.size()) == 0; };
  if (starts("\x1f\x8b")) return " (it is gzip-compressed: decompress it first)";
  if (starts("BZh")) return " (it is bzip2-compressed: decompress it first)";
  if (starts(absl::string_view("\xfd" "7zXZ\0", 6))) return " (it is xz-compressed: decompress it first)";
  if (starts("\x28\xb5\x2f\xfd")) return " (it is zstd-compressed: decompress it first)";
  return "";
}

absl::Status VerifyChecksum(const char* block, uint64_t offset, bool first) {
  absl::StatusOr<uint64_t> stored = ParseTarNumber(Field(block, kChksumOff, kChksumLen));
  // Historic tars summed signed chars; accept either sum, as GNU tar does.
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChksumOff && i < kChksumOff + kChksumLen;
    unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
    signed_sum += in_field ? ' ' : static_cast<signed char>(block[i]);
  }
  if (stored.ok() && (*stored == unsigned_sum || static_cast<int64_t>(*stored) == signed_sum)) {
    return absl::OkStatus();
  }
  if (first) return absl::InvalidArgumentError(absl::StrCat("not a tar archive", CompressionHint(block)));
  return absl::DataLossError(absl::StrCat("header checksum mismatch at offset ", offset, " (corrupt archive)"));
}

absl::StatusOr<uint64_t> ParseDecimal(absl::string_view text, absl::string_view what) {
  if (text.empty() || text.size() > 19) {
    return absl::InvalidArgumentError(absl::StrCat("invalid pax ", what, " ", Quote(text)));
  }
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return absl::InvalidArgumentError(absl::StrCat("invalid pax ", what, " ", Quote(text)));
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

// "<seconds>[.<fraction>]", optionally negative (pax allows times before 1970).
absl::Status ParsePaxTime(absl::string_view text, int64_t& sec, uint32_t& nsec) {
  bool negative = absl::ConsumePrefix(&text, "-");
  size_t dot = text.find('.');
  absl::string_view whole = text.substr(0, dot);
  absl::string_view fraction = dot == absl::string_view::npos ? absl::string_view() : text.substr(dot + 1);
  DIYC_ASSIGN_OR_RETURN(uint64_t seconds, ParseDecimal(whole, "mtime"));
  if (seconds > (uint64_t{1} << 62)) {
    return absl::InvalidArgumentError(absl::StrCat("pax mtime out of range ", Quote(text)));
  }
  uint32_t nanos = 0;
  for (size_t i = 0; i < fraction.size(); ++i) {
    char c = fraction[i];
    if (c < '0' || c > '9') return absl::InvalidArgumentError(absl::StrCat("invalid pax mtime ", Quote(text)));
    if (i < 9) nanos = nanos * 10 + static_cast<uint32_t>(c - '0');
  }
  for (size_t i = fraction.size(); i < 9; ++i) nanos *= 10;
  sec = static_cast<int64_t>(seconds);
  nsec = nanos;
  if (negative) {
    sec = -sec;
    if (nsec != 0) {
      sec -= 1;
      nsec = 1000000000u - nsec;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> ParseTarNumber(absl::string_view field) {
  if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80)) {
    // GNU base-256: 0x80 marks a positive big-endian number in the rest.
    if (static_cast<unsigned char>(field[0]) != 0x80) {
      return absl::InvalidArgumentError("negative base-256 number in tar header");
    }
    uint64_t value = 0;
    for (size_t i = 1; i < field.size(); ++i) {
      if (value >> 56) return absl::InvalidArgumentError("base-256 number in tar header overflows");
      value = (value << 8) | static_cast<unsigned char>(field[i]);
    }
    return value;
  }
  // Octal, padded with spaces or NULs on either side (as Go's archive/tar
  // reads it); anything else inside is an error.
  size_t begin = 0, end = field.size();
  while (begin < end && (field[begin] == ' ' || field[begin] == '\0')) ++begin;
  while (end > begin && (field[end - 1] == ' ' || field[end - 1] == '\0')) --end;
  uint64_t value = 0;
  for (size_t i = begin; i < end; ++i) {
    char c = field[i];
    if (c < '0' || c > '7') return absl::InvalidArgumentError(absl::StrCat("invalid octal number ", Quote(field)));
    if (value >> 60) return absl::InvalidArgumentError("octal number in tar header overflows");
    value = value * 8 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

absl::Status ParsePaxRecords(absl::string_view data, std::map<std::string, std::string>& out) {
  while (!data.empty()) {
    if (std::all_of(data.begin(), data.end(), [](char c) { return c == '\0'; })) break;
    const size_t space = data.find(' ');
    if (space == absl::string_view::npos || space == 0 || space > 19) {
      return absl::InvalidArgumentError("malformed pax header record");
    }
    uint64_t length = 0;
    for (char c : data.substr(0, space)) {
      if (c < '0' || c > '9') return absl::InvalidArgumentError("malformed pax header record length");
      length = length * 10 + static_cast<uint64_t>(c - '0');
    }
    if (length < space + 3 || length > data.size()) {
      return absl::InvalidArgumentError("pax header record length out of range");
    }
    absl::string_view record = data.substr(0, length);
    if (record.back() != '\n') return absl::InvalidArgumentError("pax header record not newline-terminated");
    absl::string_view key_value = record.substr(space + 1, length - space - 2);
    const size_t equals = key_value.find('=');
    if (equals == absl::string_view::npos || equals == 0) {
      return absl::InvalidArgumentError("pax header record without a key");
    }
    out[std::string(key_value.substr(0, equals))] = std::string(key_value.substr(equals + 1));
    data.remove_prefix(length);
  }
  return absl::OkStatus();
}

TarReader::TarReader(int fd, uint64_t known_size) : fd_(fd), known_size_(known_size), buf_(kBufferSize) {}

absl::Status TarReader::Fill() {
  buf_pos_ = 0;
  buf_len_ = 0;
  while (true) {
    ssize_t n = ::read(fd_, buf_.data(), buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "read archive");
    if (n == 0) eof_ = true;
    buf_len_ = static_cast<size_t>(n);
    return absl::OkStatus();
  }
}

absl::StatusOr<size_t> TarReader::ReadUpTo(char* dst, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (buf_pos_ == buf_len_) {
      if (eof_) break;
      DIYC_RETURN_IF_ERROR(Fill());
      if (buf_len_ == 0) break;
    }
    size_t chunk = std::min(n - done, buf_len_ - buf_pos_);
    std::memcpy(dst + done, buf_.data() + buf_pos_, chunk);
    buf_pos_ += chunk;
    done += chunk;
    offset_ += chunk;
  }
  return done;
}

absl::Status TarReader::ReadExact(char* dst, size_t n) {
  DIYC_ASSIGN_OR_RETURN(size_t got, ReadUpTo(dst, n));
  if (got < n) {
    return absl::DataLossError(absl::StrCat("archive truncated at offset ", offset_, " (", n - got, " bytes missing)"));
  }
  return absl::OkStatus();
}

absl::Status TarReader::Skip(uint64_t n) {
  while (n > 0) {
    if (buf_pos_ == buf_len_) {
      if (!eof_) DIYC_RETURN_IF_ERROR(Fill());
      if (buf_len_ == 0) {
        return absl::DataLossError(
            absl::StrCat("archive truncated at offset ", offset_, " (", n, " bytes missing)"));
      }
    }
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, buf_len_ - buf_pos_));
    buf_pos_ += chunk;
    offset_ += chunk;
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TarReader::ReadMetaData(uint64_t size) {
  if (size > kMaxMetaSize) {
    return absl::InvalidArgumentError(absl::StrCat("extension header of ", size, " bytes exceeds the 1 MiB limit"));
  }
  std::string data(static_cast<size_t>(size), '\0');
  DIYC_RETURN_IF_ERROR(ReadExact(data.data(), data.size()));
  DIYC_RETURN_IF_ERROR(Skip((kBlock - size % kBlock) % kBlock));
  return data;
}

absl::Status TarReader::CopyData(int out_fd) {
  while (data_left_ > 0) {
    if (buf_pos_ == buf_len_) {
      if (!eof_) DIYC_RETURN_IF_ERROR(Fill());
      if (buf_len_ == 0) {
        return absl::DataLossError(
            absl::StrCat("archive truncated at offset ", offset_, " (", data_left_, " bytes of data missing)"));
      }
    }
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(data_left_, buf_len_ - buf_pos_));
    const char* p = buf_.data() + buf_pos_;
    size_t left = chunk;
    while (left > 0) {
      ssize_t n = ::write(out_fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "write file data");
      p += n;
      left -= static_cast<size_t>(n);
    }
    buf_pos_ += chunk;
    offset_ += chunk;
    data_left_ -= chunk;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TarReader::Next(TarEntry& entry) {
  DIYC_RETURN_IF_ERROR(Skip(data_left_ + padding_));
  data_left_ = 0;
  padding_ = 0;

  std::optional<std::string> long_name;
  std::optional<std::string> long_link;
  std::map<std::string, std::string> pax;
  char block[kBlock];
  for (int headers = 0;; ++headers) {
    if (headers > kMaxMetaHeaders) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxMetaHeaders, " extension headers in a row"));
    }
    const uint64_t header_offset = offset_;
    DIYC_ASSIGN_OR_RETURN(size_t got, ReadUpTo(block, kBlock));
    if (got == 0) {
      if (first_header_) return absl::InvalidArgumentError("empty file: not a tar archive");
      // A tar writer always ends with zero blocks; their absence means the
      // file was cut, possibly right at an entry boundary.
      return absl::DataLossError(
          absl::StrCat("archive ends at offset ", offset_, " without the end-of-archive marker (truncated?)"));
    }
    if (got < kBlock) {
      if (first_header_) return absl::InvalidArgumentError("file too short: not a tar archive");
      return absl::DataLossError(absl::StrCat("archive truncated inside the header at offset ", header_offset));
    }
    if (IsZeroBlock(block)) {
      if (headers > 0) {
        return absl::DataLossError(
            absl::StrCat("end-of-archive marker at offset ", header_offset, " right after an extension header"));
      }
      // Like Python's tarfile and Go's archive/tar, stop at the first zero
      // block; whatever follows it is padding.
      return false;
    }
    DIYC_RETURN_IF_ERROR(VerifyChecksum(block, header_offset, first_header_));
    first_header_ = false;

    DIYC_ASSIGN_OR_RETURN(uint64_t size, ParseTarNumber(Field(block, kSizeOff, kSizeLen)));
    const char typeflag = block[kTypeOff];
    switch (typeflag) {
      case 'L': {
        DIYC_ASSIGN_OR_RETURN(std::string data, ReadMetaData(size));
        long_name = CString(data);
        continue;
      }
      case 'K': {
        DIYC_ASSIGN_OR_RETURN(std::string data, ReadMetaData(size));
        long_link = CString(data);
        continue;
      }
      case 'x': {
        DIYC_ASSIGN_OR_RETURN(std::string data, ReadMetaData(size));
        DIYC_RETURN_IF_ERROR(ParsePaxRecords(data, pax));
        continue;
      }
      case 'g': {
        DIYC_ASSIGN_OR_RETURN(std::string data, ReadMetaData(size));
        std::map<std::string, std::string> global;
        DIYC_RETURN_IF_ERROR(ParsePaxRecords(data, global));
        for (auto& [key, value] : global) {
          if (value.empty()) {
            global_pax_.erase(key);
          } else {
            global_pax_[key] = std::move(value);
          }
        }
        continue;
      }
      case 'S':
        return absl::UnimplementedError("GNU sparse files are not supported");
      default:
        break;
    }

    // Per-entry pax records override global ones; an empty value unsets.
    std::map<std::string, std::string> effective = global_pax_;
    for (auto& [key, value] : pax) {
      if (value.empty()) {
        effective.erase(key);
      } else {
        effective[key] = value;
      }
    }
    for (const auto& [key, value] : effective) {
      if (absl::StartsWith(key, "GNU.sparse.")) return absl::UnimplementedError("GNU sparse files are not supported");
    }

    entry = TarEntry{};
    entry.typeflag = typeflag;
    // The prefix field exists only in POSIX ustar; GNU tar keeps other data
    // (atime, ctime) at that offset.
    const bool posix_ustar = std::memcmp(block + kMagicOff, "ustar\0" "00", 8) == 0;
    if (auto it = effective.find("path"); it != effective.end()) {
      entry.path = it->second;
    } else if (long_name) {
      entry.path = *long_name;
    } else {
      std::string name = CString(Field(block, kNameOff, kNameLen));
      std::string prefix = posix_ustar ? CString(Field(block, kPrefixOff, kPrefixLen)) : std::string();
      entry.path = prefix.empty() ? name : absl::StrCat(prefix, "/", name);
    }
    if (auto it = effective.find("linkpath"); it != effective.end()) {
      entry.link_target = it->second;
    } else if (long_link) {
      entry.link_target = *long_link;
    } else {
      entry.link_target = CString(Field(block, kLinkOff, kLinkLen));
    }

    DIYC_ASSIGN_OR_RETURN(uint64_t mode, ParseTarNumber(Field(block, kModeOff, kModeLen)));
    entry.mode = static_cast<uint32_t>(mode & 07777);
    DIYC_ASSIGN_OR_RETURN(entry.uid, ParseTarNumber(Field(block, kUidOff, kUidLen)));
    DIYC_ASSIGN_OR_RETURN(entry.gid, ParseTarNumber(Field(block, kGidOff, kGidLen)));
    DIYC_ASSIGN_OR_RETURN(uint64_t mtime, ParseTarNumber(Field(block, kMtimeOff, kMtimeLen)));
    if (mtime > kMaxEntrySize) return absl::InvalidArgumentError("mtime out of range");
    entry.mtime_sec = static_cast<int64_t>(mtime);
    if (auto it = effective.find("size"); it != effective.end()) {
      DIYC_ASSIGN_OR_RETURN(size, ParseDecimal(it->second, "size"));
    }
    if (auto it = effective.find("uid"); it != effective.end()) {
      DIYC_ASSIGN_OR_RETURN(entry.uid, ParseDecimal(it->second, "uid"));
    }
    if (auto it = effective.find("gid"); it != effective.end()) {
      DIYC_ASSIGN_OR_RETURN(entry.gid, ParseDecimal(it->second, "gid"));
    }
    if (auto it = effective.find("mtime"); it != effective.end()) {
      DIYC_RETURN_IF_ERROR(ParsePaxTime(it->second, entry.mtime_sec, entry.mtime_nsec));
    }
    if (size > kMaxEntrySize) return absl::InvalidArgumentError(absl::StrCat("entry size ", size, " out of range"));

    bool header_only = true;
    switch (typeflag) {
      case '\0':
        // Pre-POSIX tars mark directories by a trailing slash on an
        // old-style regular entry (the rule Go and Python apply too).
        entry.type = absl::EndsWith(entry.path, "/") ? TarEntryType::kDirectory : TarEntryType::kFile;
        header_only = entry.type == TarEntryType::kDirectory;
        break;
      case '0':
      case '7':
        entry.type = TarEntryType::kFile;
        header_only = false;
        break;
      case '1': entry.type = TarEntryType::kHardLink; break;
      case '2': entry.type = TarEntryType::kSymlink; break;
      case '3': entry.type = TarEntryType::kCharDevice; break;
      case '4': entry.type = TarEntryType::kBlockDevice; break;
      case '5': entry.type = TarEntryType::kDirectory; break;
      case '6': entry.type = TarEntryType::kFifo; break;
      default:
        // Unknown types carry `size` bytes of data, which are skipped.
        entry.type = TarEntryType::kOther;
        header_only = false;
        break;
    }
    // Links, directories and special files never carry data, whatever the
    // size field says (Go's archive/tar and Python's tarfile agree), so all
    // three parsers see the same entry boundaries.
    entry.size = header_only ? 0 : size;
    data_left_ = entry.size;
    padding_ = (kBlock - entry.size % kBlock) % kBlock;
    if (known_size_ != 0 && entry.size > known_size_ - std::min(known_size_, offset_)) {
      return absl::DataLossError(absl::StrCat("entry claims ", entry.size, " bytes of data but the archive ends ",
                                              known_size_ - std::min(known_size_, offset_),
                                              " bytes later (truncated?)"));
    }
    return true;
  }
}

}  // namespace diyc::netcore
