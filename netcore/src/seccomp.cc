#include "diyc/netcore/seccomp.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"

namespace diyc::netcore {

const std::vector<std::string>& DefaultDeniedSyscalls() {
  static const std::vector<std::string> kDenied = {
      "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
      "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy",
      "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp",
      "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
      "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
      "perf_event_open", "pidfd_getfd", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
      "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns",
      "settimeofday", "stime", "swapoff", "swapon", "syslog", "sysfs", "_sysctl", "umount", "umount2",
      "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
  };
  return kDenied;
}

absl::Status ApplyDefaultSeccomp() {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!ctx) return absl::ResourceExhaustedError("seccomp: cannot allocate a filter");
  for (const std::string& name : DefaultDeniedSyscalls()) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0); rc < 0) {
      return ErrnoError(-rc, absl::StrCat("seccomp: deny ", name));
    }
  }
  // New namespaces from inside the container: refused per flag, since a rule
  // can only compare masked bits for equality.
  constexpr scmp_datum_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
                                              CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME};
  for (scmp_datum_t flag : kNamespaceFlags) {
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
        rc < 0) {
      return ErrnoError(-rc, "seccomp: restrict clone");
    }
  }
  if (int nr = seccomp_syscall_resolve_name("clone3"); nr != __NR_SCMP_ERROR) {
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), nr, 0); rc < 0) {
      return ErrnoError(-rc, "seccomp: restrict clone3");
    }
  }
  if (int rc = seccomp_load(ctx.get()); rc < 0) return ErrnoError(-rc, "seccomp: load filter");
  return absl::OkStatus();
}

}  // namespace diyc::netcore
