// The privileges a container's process keeps.
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace diyc::netcore {

// Docker's default capability set (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID,
// CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID, CAP_SETUID, CAP_SETFCAP,
// CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,
// CAP_AUDIT_WRITE): enough for ordinary programs, including ping; nothing
// that administers the host (no CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE,
// CAP_SYS_PTRACE, ...).
const std::vector<int>& DefaultCapabilities();

// Reduces the bounding, permitted, effective and inheritable sets to `keep`,
// clears the ambient set, and sets no_new_privs so nothing executed later can
// gain privileges back (setuid binaries, file capabilities).
absl::Status RestrictPrivileges(const std::vector<int>& keep);

}  // namespace diyc::netcore
