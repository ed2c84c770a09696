// Validation of names that reach the kernel or the filesystem. Everything a
// caller hands in is checked here before any syscall is made.
#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace diyc::netcore {

inline constexpr size_t kMaxIfNameLen = 15;  // IFNAMSIZ - 1

// 1-15 bytes; no '/', ':', whitespace, control bytes or NUL; not ".", "..",
// "all" or "default" (the kernel reserves the last two under /proc/sys).
absl::Status ValidateIfName(absl::string_view name);

// A name under /run/netns: what `ip netns add` accepts, minus anything that
// could leave the directory (no '/', not "." or ".."), no NUL or control bytes,
// at most 255 bytes.
absl::Status ValidateNetnsName(absl::string_view name);

// A sysctl key such as "net.ipv4.ip_forward" or "net/ipv6/conf/eth0.5/forwarding":
// components of [A-Za-z0-9_.-] separated by '.' or '/', none empty, "." or "..".
absl::Status ValidateSysctlKey(absl::string_view key);

}  // namespace diyc::netcore
