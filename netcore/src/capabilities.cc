#include "diyc/netcore/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"

namespace diyc::netcore {

const std::vector<int>& DefaultCapabilities() {
  static const std::vector<int> kDefault = {
      CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,     CAP_MKNOD, CAP_NET_RAW,     CAP_SETGID,
      CAP_SETUID, CAP_SETFCAP,      CAP_SETPCAP,          CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
  };
  return kDefault;
}

absl::Status RestrictPrivileges(const std::vector<int>& keep) {
  auto kept = [&](int cap) { return std::find(keep.begin(), keep.end(), cap) != keep.end(); };
  // The highest capability this kernel knows.
  int last_cap = CAP_LAST_CAP;
  for (int cap = CAP_LAST_CAP + 1; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;
    last_cap = cap;
  }
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (kept(cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return ErrnoError(errno, absl::StrCat("drop capability ", cap, " from the bounding set"));
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return ErrnoError(errno, "clear ambient capabilities");
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int cap : keep) {
    if (cap < 0 || cap > last_cap) continue;
    data[cap / 32].effective |= 1u << (cap % 32);
    data[cap / 32].permitted |= 1u << (cap % 32);
    data[cap / 32].inheritable |= 1u << (cap % 32);
  }
  if (syscall(SYS_capset, &header, data) != 0) return ErrnoError(errno, "set capabilities");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return ErrnoError(errno, "set no_new_privs");
  return absl::OkStatus();
}

}  // namespace diyc::netcore
