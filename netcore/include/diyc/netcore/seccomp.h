// The default system call filter of containers.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace diyc::netcore {

// The system calls the default filter refuses with EPERM: what Docker's
// default seccomp profile leaves out of its allowlist (kernel modules and
// keyrings, clock and reboot control, mount and namespace changes, tracing
// other processes, BPF, perf, userfaultfd, io_uring, ...). clone/unshare
// with namespace flags are refused too; clone3 answers ENOSYS so the C
// library falls back to clone, whose flags the filter can see.
const std::vector<std::string>& DefaultDeniedSyscalls();

// Installs the filter on the calling thread (inherited by everything it
// execs). Requires no_new_privs or CAP_SYS_ADMIN.
absl::Status ApplyDefaultSeccomp();

}  // namespace diyc::netcore
