#include "diyc/netcore/rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"

namespace diyc::netcore {
namespace {

absl::Status Mount(const std::string& source, const std::string& target, const char* type, unsigned long flags,
                   const std::string& data = "") {
  if (mount(source.c_str(), target.c_str(), type, flags, data.empty() ? nullptr : data.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat("mount ", type ? type : "bind", " ", Quote(source), " on ", Quote(target)));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return ErrnoError(errno, absl::StrCat("mkdir ", Quote(path)));
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& contents, mode_t mode) {
  // O_NOFOLLOW: an image may ship /etc/hosts as a symlink to anywhere.
  unlink(path.c_str());
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return ErrnoError(errno, absl::StrCat("write ", Quote(path)));
  if (write(fd.get(), contents.data(), contents.size()) != static_cast<ssize_t>(contents.size())) {
    return ErrnoError(errno, absl::StrCat("write ", Quote(path)));
  }
  return absl::OkStatus();
}

// Makes `path` (under the new root) a directory, replacing a symlink the
// image may have put there so a mount never lands outside the root.
absl::Status EnsureMountPoint(const std::string& path, mode_t mode) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    if (unlink(path.c_str()) != 0) return ErrnoError(errno, absl::StrCat("replace ", Quote(path)));
  }
  return MakeDir(path, mode);
}

struct DeviceNode {
  const char* name;
  unsigned major;
  unsigned minor;
};
constexpr DeviceNode kDevices[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

absl::Status SetupDev(const std::string& root) {
  const std::string dev = root + "/dev";
  DIYC_RETURN_IF_ERROR(EnsureMountPoint(dev, 0755));
  DIYC_RETURN_IF_ERROR(Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"));
  for (const DeviceNode& d : kDevices) {
    const std::string path = absl::StrCat(dev, "/", d.name);
    if (mknod(path.c_str(), S_IFCHR | 0666, makedev(d.major, d.minor)) != 0) {
      return ErrnoError(errno, absl::StrCat("mknod ", Quote(path)));
    }
    chmod(path.c_str(), 0666);  // mknod honours the umask
  }
  DIYC_RETURN_IF_ERROR(MakeDir(dev + "/pts", 0755));
  DIYC_RETURN_IF_ERROR(Mount("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                             "newinstance,ptmxmode=0666,mode=0620"));
  DIYC_RETURN_IF_ERROR(MakeDir(dev + "/shm", 01777));
  DIYC_RETURN_IF_ERROR(Mount("shm", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k"));
  for (auto [link, target] : {std::pair{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                              {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}}) {
    if (symlink(target, absl::StrCat(dev, "/", link).c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("symlink /dev/", link));
    }
  }
  return absl::OkStatus();
}

// Files under /proc and /sys that describe the host rather than the
// container, as Docker's default masks them.
constexpr const char* kMaskedPaths[] = {
    "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
    "/proc/acpi", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
};
constexpr const char* kReadOnlyPaths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

absl::Status MaskPaths(const std::string& root) {
  for (const char* masked : kMaskedPaths) {
    const std::string path = root + masked;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;  // not on this kernel
    if (S_ISDIR(st.st_mode)) {
      DIYC_RETURN_IF_ERROR(Mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0"));
    } else {
      DIYC_RETURN_IF_ERROR(Mount("/dev/null", path, nullptr, MS_BIND));
    }
  }
  for (const char* ro : kReadOnlyPaths) {
    const std::string path = root + ro;
    if (access(path.c_str(), F_OK) != 0) continue;
    DIYC_RETURN_IF_ERROR(Mount(path, path, nullptr, MS_BIND | MS_REC));
    DIYC_RETURN_IF_ERROR(Mount(path, path, nullptr, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOverlayPath(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.find_first_of(",:\\\n") != std::string::npos ||
      path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", Quote(path), " cannot be used with overlayfs: it must be absolute, without ',', ':' or '\\'"));
  }
  return absl::OkStatus();
}

absl::Status SetupRootfs(const RootfsOptions& o) {
  for (const std::string* p : {&o.lower_dir, &o.upper_dir, &o.work_dir, &o.rootfs_dir}) {
    DIYC_RETURN_IF_ERROR(ValidateOverlayPath(*p));
  }
  // Nothing mounted from here on may propagate back to the host.
  DIYC_RETURN_IF_ERROR(Mount("", "/", nullptr, MS_REC | MS_PRIVATE));
  const std::string& root = o.rootfs_dir;
  DIYC_RETURN_IF_ERROR(Mount("overlay", root, "overlay", 0,
                             absl::StrCat("lowerdir=", o.lower_dir, ",upperdir=", o.upper_dir, ",workdir=", o.work_dir)));

  DIYC_RETURN_IF_ERROR(EnsureMountPoint(root + "/proc", 0555));
  DIYC_RETURN_IF_ERROR(Mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC));
  DIYC_RETURN_IF_ERROR(SetupDev(root));
  DIYC_RETURN_IF_ERROR(EnsureMountPoint(root + "/sys", 0555));
  DIYC_RETURN_IF_ERROR(Mount("sysfs", root + "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC));
  DIYC_RETURN_IF_ERROR(MaskPaths(root));

  DIYC_RETURN_IF_ERROR(EnsureMountPoint(root + "/etc", 0755));
  DIYC_RETURN_IF_ERROR(WriteFile(root + "/etc/hostname", o.hostname + "\n", 0644));
  DIYC_RETURN_IF_ERROR(WriteFile(root + "/etc/hosts", o.hosts, 0644));
  DIYC_RETURN_IF_ERROR(WriteFile(root + "/etc/resolv.conf", o.resolv_conf, 0644));
  DIYC_RETURN_IF_ERROR(EnsureMountPoint(root + "/tmp", 01777));

  // pivot_root(".", ".") stacks the old root under the new one, so no
  // directory has to be created in the image for it.
  UniqueFd new_root(open(root.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!new_root) return ErrnoError(errno, absl::StrCat("open ", Quote(root)));
  if (fchdir(new_root.get()) != 0) return ErrnoError(errno, "chdir to new root");
  if (syscall(SYS_pivot_root, ".", ".") != 0) return ErrnoError(errno, "pivot_root");
  if (umount2(".", MNT_DETACH) != 0) return ErrnoError(errno, "detach old root");
  if (chdir("/") != 0) return ErrnoError(errno, "chdir /");
  return absl::OkStatus();
}

}  // namespace diyc::netcore
