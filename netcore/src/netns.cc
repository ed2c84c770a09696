#include "diyc/netcore/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"

namespace diyc::netcore {
namespace {

std::string NamedPath(absl::string_view name) { return absl::StrCat(kNetnsRunDir, "/", name); }

// /run/netns must be a shared mount point so that namespace bind mounts made
// here propagate to other mount namespaces (as `ip netns add` arranges).
absl::Status PrepareRunDir() {
  if (mkdir(kNetnsRunDir, 0755) != 0 && errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("create ", kNetnsRunDir));
  }
  if (mount("", kNetnsRunDir, "none", MS_SHARED | MS_REC, nullptr) == 0) return absl::OkStatus();
  if (errno != EINVAL) return ErrnoError(errno, absl::StrCat("make ", kNetnsRunDir, " shared"));
  // Not a mount point yet: bind it onto itself, then share it.
  if (mount(kNetnsRunDir, kNetnsRunDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
    return ErrnoError(errno, absl::StrCat("bind ", kNetnsRunDir));
  }
  if (mount("", kNetnsRunDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return ErrnoError(errno, absl::StrCat("make ", kNetnsRunDir, " shared"));
  }
  return absl::OkStatus();
}

// Opens path and checks that it is a network namespace. missing_code is what
// a file that exists but is no namespace means to the caller (a named entry
// whose bind mount is gone is simply not there any more).
absl::StatusOr<UniqueFd> OpenNsFile(const std::string& path, absl::string_view label,
                                    absl::StatusCode missing_code) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, absl::StrCat("open netns ", Quote(label)));
  int type = ioctl(fd.get(), NS_GET_NSTYPE);
  if (type != CLONE_NEWNET) {
    return absl::Status(missing_code, absl::StrCat("open netns ", Quote(label), ": not a network namespace"));
  }
  return fd;
}

}  // namespace

namespace {

// Makes a namespace and pins it with a bind mount at path; undoes every step
// on failure.
absl::StatusOr<UniqueFd> CreatePinned(const std::string& path, const std::string& what) {
  UniqueFd placeholder(open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0));
  if (!placeholder) return ErrnoError(errno, what);
  placeholder.Reset();
  absl::Cleanup remove_placeholder = [&path] { unlink(path.c_str()); };

  // unshare() moves only the calling thread, so a throw-away thread makes the
  // namespace and pins it with a bind mount before it exits.
  absl::Status made;
  std::thread([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      made = ErrnoError(errno, absl::StrCat(what, ": unshare"));
      return;
    }
    if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      made = ErrnoError(errno, absl::StrCat(what, ": bind mount"));
    }
  }).join();
  if (!made.ok()) return made;

  absl::StatusOr<UniqueFd> fd = OpenNsFile(path, path, absl::StatusCode::kInternal);
  if (!fd.ok()) {
    umount2(path.c_str(), MNT_DETACH);
    return fd.status();
  }
  std::move(remove_placeholder).Cancel();
  return fd;
}

absl::Status RemovePinned(const std::string& path, const std::string& what) {
  // Detach rather than fail with EBUSY when a process still has it open.
  bool unmounted = umount2(path.c_str(), MNT_DETACH) == 0;
  int umount_errno = errno;
  if (unlink(path.c_str()) != 0) return ErrnoError(errno, what);
  if (!unmounted && umount_errno != EINVAL) return ErrnoError(umount_errno, what);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Netns> Netns::Create(absl::string_view name) {
  DIYC_RETURN_IF_ERROR(ValidateNetnsName(name));
  const std::string path = NamedPath(name);
  const std::string what = absl::StrCat("create netns ", Quote(name));
  DIYC_RETURN_IF_ERROR(Annotate(PrepareRunDir(), what));
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, CreatePinned(path, what));
  return Netns(std::move(fd), std::string(name), path);
}

absl::StatusOr<Netns> Netns::CreateAt(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("netns path ", Quote(path), ": must be an absolute path"));
  }
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, CreatePinned(path, absl::StrCat("create netns at ", Quote(path))));
  return Netns(std::move(fd), "", path);
}

absl::Status Netns::RemoveAt(const std::string& path) {
  return RemovePinned(path, absl::StrCat("remove netns at ", Quote(path)));
}

absl::StatusOr<Netns> Netns::OpenName(absl::string_view name) {
  DIYC_RETURN_IF_ERROR(ValidateNetnsName(name));
  std::string path = NamedPath(name);
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenNsFile(path, name, absl::StatusCode::kNotFound));
  return Netns(std::move(fd), std::string(name), std::move(path));
}

absl::StatusOr<Netns> Netns::OpenPath(absl::string_view path) {
  if (path.empty() || path.front() != '/' || path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("netns path ", Quote(path), ": must be an absolute path"));
  }
  std::string copy(path);
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenNsFile(copy, path, absl::StatusCode::kInvalidArgument));
  return Netns(std::move(fd), "", std::move(copy));
}

absl::StatusOr<Netns> Netns::OpenPid(pid_t pid) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid pid ", pid));
  std::string path = absl::StrCat("/proc/", pid, "/ns/net");
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenNsFile(path, path, absl::StatusCode::kNotFound));
  return Netns(std::move(fd), "", std::move(path));
}

absl::StatusOr<Netns> Netns::Current() {
  // /proc/self names the main thread; this thread may be elsewhere.
  std::string path = "/proc/thread-self/ns/net";
  DIYC_ASSIGN_OR_RETURN(UniqueFd fd, OpenNsFile(path, path, absl::StatusCode::kInternal));
  return Netns(std::move(fd), "", std::move(path));
}

absl::Status Netns::Remove(absl::string_view name) {
  DIYC_RETURN_IF_ERROR(ValidateNetnsName(name));
  return RemovePinned(NamedPath(name), absl::StrCat("remove netns ", Quote(name)));
}

absl::StatusOr<std::vector<std::string>> Netns::List() {
  std::vector<std::string> names;
  DIR* dir = opendir(kNetnsRunDir);
  if (dir == nullptr) {
    if (errno == ENOENT) return names;
    return ErrnoError(errno, absl::StrCat("list ", kNetnsRunDir));
  }
  absl::Cleanup close_dir = [dir] { closedir(dir); };
  while (dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<bool> Netns::SameAs(const Netns& other) const {
  struct stat a, b;
  if (fstat(fd(), &a) != 0 || fstat(other.fd(), &b) != 0) return ErrnoError(errno, "stat netns");
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

Netns Netns::Dup() const {
  return Netns(UniqueFd(fcntl(fd(), F_DUPFD_CLOEXEC, 0)), name_, path_);
}

absl::Status RunInNetns(const Netns& ns, absl::FunctionRef<absl::Status()> fn) {
  if (!ns.valid()) return absl::FailedPreconditionError("netns handle is closed");
  absl::Status status;
  std::thread([&] {
    if (setns(ns.fd(), CLONE_NEWNET) != 0) {
      status = ErrnoError(errno, absl::StrCat("enter netns ", Quote(ns.label())));
      return;
    }
    status = fn();
  }).join();
  return status;
}

}  // namespace diyc::netcore
