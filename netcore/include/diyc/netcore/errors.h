// Building statuses from errno values and adding context to them.
#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace diyc::netcore {

// The canonical code diyc uses for a kernel errno. It differs from
// absl::ErrnoToStatusCode where the kernel's meaning is more specific: EXFULL
// (a bridge at its port limit) is RESOURCE_EXHAUSTED, ENODEV is NOT_FOUND.
absl::StatusCode ErrnoToCode(int error_number);

// "<what>: <strerror>" with the errno attached, so callers (and Python) can
// still see the exact kernel error. A detail (the kernel's extended ack)
// reads "<what>: <detail> (<strerror>)".
absl::Status ErrnoError(int error_number, absl::string_view what, absl::string_view detail = {});

// The errno attached by ErrnoError, if any.
std::optional<int> StatusErrno(const absl::Status& status);

// The value in single quotes, with control bytes, quotes and backslashes
// escaped and long values cut, so a hostile name cannot forge a log line.
std::string Quote(absl::string_view text);

// Prepends "<context>: " to the message and keeps code and errno.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace diyc::netcore
