#include "diyc/netcore/errors.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace diyc::netcore {
namespace {

constexpr char kErrnoPayload[] = "diyc.dev/errno";

}  // namespace

absl::StatusCode ErrnoToCode(int error_number) {
  switch (error_number) {
    case EEXIST:
    case EADDRINUSE:
      return absl::StatusCode::kAlreadyExists;
    case ENOENT:
    case ENODEV:
    case ESRCH:
    case ENXIO:
    case EADDRNOTAVAIL:
      return absl::StatusCode::kNotFound;
    case EPERM:
    case EACCES:
      return absl::StatusCode::kPermissionDenied;
    case EINVAL:
    case ERANGE:
    case ENAMETOOLONG:
    case EAFNOSUPPORT:
      return absl::StatusCode::kInvalidArgument;
    case EXFULL:
    case ENOSPC:
    case ENOMEM:
    case ENOBUFS:
    case EMFILE:
    case ENFILE:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    case EBUSY:
    case ENOTEMPTY:
    case ENETUNREACH:
    case ENETDOWN:
      return absl::StatusCode::kFailedPrecondition;
    case EAGAIN:
    case EINTR:
      return absl::StatusCode::kUnavailable;
    case EOPNOTSUPP:
      return absl::StatusCode::kUnimplemented;
    default:
      return absl::ErrnoToStatusCode(error_number);
  }
}

std::string Quote(absl::string_view text) {
  std::string shown = "'";
  for (unsigned char c : text.substr(0, 64)) {
    if (c < ' ' || c >= 0x7f || c == '\'' || c == '\\') {
      absl::StrAppend(&shown, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      shown.push_back(static_cast<char>(c));
    }
  }
  if (text.size() > 64) shown += "...";
  shown += "'";
  return shown;
}

absl::Status ErrnoError(int error_number, absl::string_view what, absl::string_view detail) {
  std::string message = detail.empty()
                            ? absl::StrCat(what, ": ", std::strerror(error_number))
                            : absl::StrCat(what, ": ", detail, " (", std::strerror(error_number), ")");
  absl::Status status(ErrnoToCode(error_number), message);
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(error_number)));
  return status;
}

std::optional<int> StatusErrno(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayload);
  if (!payload) return std::nullopt;
  int value = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &value)) return std::nullopt;
  return value;
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

}  // namespace diyc::netcore
