#include "diyc/netcore/validate.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"

namespace diyc::netcore {
namespace {

absl::Status Bad(absl::string_view what, absl::string_view value, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("invalid ", what, " ", Quote(value), ": ", rule));
}

bool HasControlOrSpace(absl::string_view text) {
  for (unsigned char c : text) {
    if (c <= ' ' || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

absl::Status ValidateIfName(absl::string_view name) {
  constexpr absl::string_view kWhat = "interface name";
  if (name.empty()) return Bad(kWhat, name, "must not be empty");
  if (name.size() > kMaxIfNameLen) return Bad(kWhat, name, "longer than 15 bytes");
  if (HasControlOrSpace(name)) return Bad(kWhat, name, "whitespace or control characters");
  if (name.find('/') != absl::string_view::npos || name.find(':') != absl::string_view::npos) {
    return Bad(kWhat, name, "contains '/' or ':'");
  }
  if (name == "." || name == ".." || name == "all" || name == "default") {
    return Bad(kWhat, name, "reserved name");
  }
  return absl::OkStatus();
}

absl::Status ValidateNetnsName(absl::string_view name) {
  constexpr absl::string_view kWhat = "netns name";
  if (name.empty()) return Bad(kWhat, name, "must not be empty");
  if (name.size() > 255) return Bad(kWhat, name, "longer than 255 bytes");
  if (HasControlOrSpace(name)) return Bad(kWhat, name, "whitespace or control characters");
  if (name.find('/') != absl::string_view::npos) return Bad(kWhat, name, "contains '/'");
  if (name == "." || name == "..") return Bad(kWhat, name, "reserved name");
  return absl::OkStatus();
}

absl::Status ValidateSysctlKey(absl::string_view key) {
  constexpr absl::string_view kWhat = "sysctl key";
  if (key.empty() || key.size() > 255) return Bad(kWhat, key, "empty or too long");
  const bool slashes = key.find('/') != absl::string_view::npos;
  const char separator = slashes ? '/' : '.';
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find(separator, start);
    if (end == absl::string_view::npos) end = key.size();
    absl::string_view part = key.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return Bad(kWhat, key, "empty or relative component");
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '-' || c == '.';
      if (!ok) return Bad(kWhat, key, "characters outside [A-Za-z0-9_.-]");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

}  // namespace diyc::netcore
