#include "diyc/netcore/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"
#include "diyc/netcore/validate.h"

namespace diyc::netcore {
namespace {

std::string SysctlPath(absl::string_view key) {
  std::string path = absl::StrCat("/proc/sys/", key);
  if (key.find('/') == absl::string_view::npos) {
    std::replace(path.begin() + 10, path.end(), '.', '/');
  }
  return path;
}

// /proc/sys/net resolves against the namespace of the thread that opens it,
// so the open happens inside ns; the fd keeps pointing there afterwards.
absl::StatusOr<UniqueFd> OpenSysctl(const Netns* ns, absl::string_view key, int flags) {
  DIYC_RETURN_IF_ERROR(ValidateSysctlKey(key));
  const std::string path = SysctlPath(key);
  auto open_it = [&]() -> absl::StatusOr<UniqueFd> {
    UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC));
    if (!fd) return ErrnoError(errno, absl::StrCat("open sysctl ", Quote(key)));
    return fd;
  };
  if (ns == nullptr) return open_it();
  return RunInNetnsFor<UniqueFd>(*ns, open_it);
}

}  // namespace

absl::Status WriteSysctl(const Netns* ns, absl::string_view key, absl::string_view value) {
  if (value.empty() || value.size() > 4096 || value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid value for sysctl ", Quote(key)));
  }
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenSysctl(ns, key, O_WRONLY));
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoError(errno, absl::StrCat("write sysctl ", Quote(key)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSysctl(const Netns* ns, absl::string_view key) {
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenSysctl(ns, key, O_RDONLY));
  std::string value(4096, '\0');
  ssize_t n = read(fd.get(), value.data(), value.size());
  if (n < 0) return ErrnoError(errno, absl::StrCat("read sysctl ", Quote(key)));
  value.resize(n);
  return std::string(absl::StripTrailingAsciiWhitespace(value));
}

}  // namespace diyc::netcore
