#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/image.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"
#include "tar_reader.h"

namespace diyc::netcore {
namespace {

constexpr size_t kPathMax = 4095;  // PATH_MAX less the NUL
constexpr size_t kNameMax = 255;
constexpr int kOpenRetries = 16;
constexpr size_t kCopyBuffer = 128 * 1024;

// Resolution inside an image being written: symlinks are followed as the
// container will follow them, with "/" and ".." clamped to the image root.
constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
// Walking a tree that is read or removed: no symlink is followed at all and
// no mount point is crossed.
constexpr uint64_t kBeneathNoLinks = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;

using Components = std::vector<std::string>;

// The first `n` components joined by '/', or "." for none.
std::string Join(const Components& path, size_t n) {
  if (n == 0) return ".";
  return absl::StrJoin(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(n), "/");
}
std::string Join(const Components& path) { return Join(path, path.size()); }

absl::Status ErrnoAt(int error_number, absl::string_view verb, absl::string_view path) {
  return ErrnoError(error_number, absl::StrCat(verb, " ", Quote(path)));
}

// Appends to a status's message, keeping its code and payloads.
absl::Status AppendMessage(const absl::Status& status, absl::string_view extra) {
  absl::Status result(status.code(), absl::StrCat(status.message(), extra));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { result.SetPayload(url, payload); });
  return result;
}

absl::StatusOr<UniqueFd> OpenAt2(int dir_fd, const std::string& path, uint64_t flags, uint64_t resolve) {
  struct open_how how = {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, dir_fd, path.c_str(), &how, sizeof(how));
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    const int error = errno;
    // EAGAIN: a rename elsewhere on the filesystem raced the confined walk;
    // the kernel asks the caller to retry.
    if ((error == EAGAIN || error == EINTR) && attempt < kOpenRetries) continue;
    if (error == ENOSYS) return absl::UnimplementedError("openat2 is not available (Linux 5.6 or later is required)");
    return ErrnoAt(error, "open", path);
  }
}

// Splits an entry name into components: leading '/' and "." components are
// dropped, ".." is refused. The result names a path inside the image.
absl::StatusOr<Components> SplitEntryPath(absl::string_view name) {
  if (name.find('\0') != absl::string_view::npos) return absl::InvalidArgumentError("path contains a NUL byte");
  if (name.size() > kPathMax) return absl::InvalidArgumentError("path longer than 4095 bytes");
  Components path;
  for (absl::string_view part : absl::StrSplit(name, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") return absl::InvalidArgumentError("path escapes the image");
    if (part.size() > kNameMax) return absl::InvalidArgumentError("path component longer than 255 bytes");
    path.emplace_back(part);
  }
  return path;
}

struct DirEntry {
  std::string name;
  unsigned char type;  // DT_*
};

absl::StatusOr<std::vector<DirEntry>> ListDir(int dir_fd) {
  // fdopendir takes ownership, so it gets its own descriptor.
  int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return ErrnoError(errno, "duplicate directory fd");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(dup), &::closedir);
  if (!dir) {
    const int error = errno;
    ::close(dup);
    return ErrnoError(error, "read directory");
  }
  ::rewinddir(dir.get());
  std::vector<DirEntry> entries;
  while (true) {
    errno = 0;
    struct dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) return ErrnoError(errno, "read directory");
      break;
    }
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    entries.push_back({std::string(name), entry->d_type});
  }
  return entries;
}

absl::StatusOr<bool> IsDirectoryAt(int dir_fd, const DirEntry& entry) {
  if (entry.type != DT_UNKNOWN) return entry.type == DT_DIR;
  struct stat st;
  if (::fstatat(dir_fd, entry.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoAt(errno, "stat", entry.name);
  }
  return S_ISDIR(st.st_mode);
}

absl::Status MountPointError(absl::string_view path) {
  return absl::FailedPreconditionError(absl::StrCat(Quote(path), " is a mount point; unmount it first"));
}

// Opens a directory of a tree being removed. A directory without owner
// read/search bits (mode 0, say) cannot be opened by a non-root owner, so it
// is opened O_PATH, checked to be a directory, and given u+rwx through its
// /proc/self/fd magic link: chmod(2) on that link acts on the very inode the
// fd holds, never on a path that could since have become a symlink.
absl::StatusOr<UniqueFd> OpenForRemoval(int top_fd, const std::string& rel) {
  absl::StatusOr<UniqueFd> dir = OpenAt2(top_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, kBeneathNoLinks);
  if (dir.ok() || StatusErrno(dir.status()) != EACCES) return dir;
  DIYC_ASSIGN_OR_RETURN(UniqueFd path_fd, OpenAt2(top_fd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW, kBeneathNoLinks));
  struct stat st;
  if (::fstat(path_fd.get(), &st) != 0 || !S_ISDIR(st.st_mode)) return dir;
  const std::string magic = absl::StrCat("/proc/self/fd/", path_fd.get());
  if (::chmod(magic.c_str(), (st.st_mode & 07777) | 0700) != 0) return dir;
  return OpenAt2(top_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, kBeneathNoLinks);
}

// Removes `name` in `parent_fd` and, for a directory, everything below it.
// Directories are opened by their path from the top with RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV rather than kept open, so the walk
// holds two descriptors whatever the depth and can never be redirected by a
// symlink or into another mount.
absl::Status RemoveTreeAt(int parent_fd, const std::string& name) {
  struct stat st;
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoAt(errno, "stat", name);
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0) return ErrnoAt(errno, "remove", name);
    return absl::OkStatus();
  }
  absl::StatusOr<UniqueFd> top = OpenForRemoval(parent_fd, name);
  if (!top.ok()) {
    if (StatusErrno(top.status()) == EXDEV) return MountPointError(name);
    return top.status();
  }
  std::vector<std::string> pending = {"."};
  while (!pending.empty()) {
    const std::string rel = pending.back();
    absl::StatusOr<UniqueFd> dir = OpenForRemoval(top->get(), rel);
    if (!dir.ok()) {
      if (StatusErrno(dir.status()) == EXDEV) return MountPointError(rel);
      return dir.status();
    }
    // A directory without owner write/search bits (an image's 0555 /proc,
    // say) would refuse to give up its entries to a non-root caller.
    struct stat dir_st;
    if (::fstat(dir->get(), &dir_st) == 0 && (dir_st.st_mode & 0700) != 0700) {
      (void)::fchmod(dir->get(), (dir_st.st_mode & 07777) | 0700);
    }
    DIYC_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(dir->get()));
    size_t subdirs = 0;
    for (const DirEntry& entry : entries) {
      std::string child = rel == "." ? entry.name : absl::StrCat(rel, "/", entry.name);
      DIYC_ASSIGN_OR_RETURN(bool is_dir, IsDirectoryAt(dir->get(), entry));
      if (is_dir) {
        pending.push_back(std::move(child));
        ++subdirs;
      } else if (::unlinkat(dir->get(), entry.name.c_str(), 0) != 0 && errno != ENOENT) {
        return ErrnoAt(errno, "remove", child);
      }
    }
    if (subdirs > 0) continue;  // come back once the subdirectories are gone
    pending.pop_back();
    if (rel == ".") break;
    const size_t slash = rel.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : rel.substr(0, slash);
    const std::string leaf = slash == std::string::npos ? rel : rel.substr(slash + 1);
    DIYC_ASSIGN_OR_RETURN(UniqueFd parent_dir,
                          OpenAt2(top->get(), parent, O_PATH | O_DIRECTORY | O_NOFOLLOW, kBeneathNoLinks));
    if (::unlinkat(parent_dir.get(), leaf.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return ErrnoAt(errno, "remove", rel);
    }
  }
  top->Reset();
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0) return ErrnoAt(errno, "remove", name);
  return absl::OkStatus();
}

// Splits a caller-given path into the directory holding it (opened O_PATH,
// following symlinks: the caller's own path is trusted) and its last name.
absl::Status OpenContainingDir(const std::string& path, UniqueFd& parent_fd, std::string& name) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  if (trimmed.empty() || trimmed.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid path ", Quote(path)));
  }
  const size_t slash = trimmed.rfind('/');
  std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : trimmed.substr(0, slash));
  name = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid path ", Quote(path), ": must name an entry"));
  }
  parent_fd.Reset(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) return ErrnoAt(errno, "open directory", parent);
  return absl::OkStatus();
}

struct Meta {
  uint32_t mode = 0755;
  uint32_t uid = 0;
  uint32_t gid = 0;
  struct timespec mtime = {0, UTIME_OMIT};
};

Meta MetaFromStat(const struct stat& st) {
  return Meta{static_cast<uint32_t>(st.st_mode & 07777), st.st_uid, st.st_gid, st.st_mtim};
}

// Writes one image tree. Every path it is given is a list of components
// already checked by SplitEntryPath (or read from a directory), and every
// filesystem call is relative to a directory fd inside the destination.
class TreeWriter {
 public:
  static absl::StatusOr<TreeWriter> Create(const std::string& dest_dir, const ImportOptions& options) {
    TreeWriter writer(options);
    DIYC_RETURN_IF_ERROR(OpenContainingDir(dest_dir, writer.parent_, writer.name_));
    // 0700 until Finish: nobody else can reach half-written files.
    if (::mkdirat(writer.parent_.get(), writer.name_.c_str(), 0700) != 0) {
      return ErrnoAt(errno, "create image directory", dest_dir);
    }
    writer.root_.Reset(
        ::openat(writer.parent_.get(), writer.name_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!writer.root_ || ::fstat(writer.root_.get(), &st) != 0) {
      absl::Status status = ErrnoAt(errno, "open image directory", dest_dir);
      (void)::unlinkat(writer.parent_.get(), writer.name_.c_str(), AT_REMOVEDIR);
      return status;
    }
    writer.root_dev_ = st.st_dev;
    writer.root_ino_ = st.st_ino;
    return writer;
  }

  TreeWriter(TreeWriter&&) = default;
  TreeWriter& operator=(TreeWriter&&) = default;

  const ImageStats& stats() const { return stats_; }
  bool IsRoot(const struct stat& st) const { return st.st_dev == root_dev_ && st.st_ino == root_ino_; }

  absl::Status AddDirectory(const Components& path, const Meta& meta) {
    DIYC_RETURN_IF_ERROR(CountEntry());
    if (path.empty()) {
      root_meta_ = meta;
      return absl::OkStatus();
    }
    DIYC_ASSIGN_OR_RETURN(UniqueFd parent, OpenDir(path, path.size() - 1, /*create=*/true));
    const char* leaf = path.back().c_str();
    if (::mkdirat(parent.get(), leaf, 0700) != 0) {
      if (errno != EEXIST) return ErrnoError(errno, "create directory");
      struct stat st;
      if (::fstatat(parent.get(), leaf, &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError(errno, "stat");
      // An existing directory is merged with (its metadata updated), as tar
      // does; anything else, a symlink included, is replaced.
      if (!S_ISDIR(st.st_mode)) {
        DIYC_RETURN_IF_ERROR(RemoveTreeAt(parent.get(), path.back()));
        if (::mkdirat(parent.get(), leaf, 0700) != 0) return ErrnoError(errno, "create directory");
      }
    }
    RecordDirectory(path, meta);
    ++stats_.directories;
    return absl::OkStatus();
  }

  // `write_data(fd, budget)` writes the file's contents to `fd`; more than
  // `budget` bytes must fail with RESOURCE_EXHAUSTED.
  absl::Status AddFile(const Components& path, const Meta& meta,
                       absl::FunctionRef<absl::Status(int fd, uint64_t budget)> write_data) {
    DIYC_RETURN_IF_ERROR(CountEntry());
    if (path.empty()) return absl::InvalidArgumentError("a file cannot replace the image root");
    DIYC_ASSIGN_OR_RETURN(UniqueFd parent, OpenDir(path, path.size() - 1, /*create=*/true));
    const char* leaf = path.back().c_str();
    // O_EXCL never follows a symlink at the name, and a fresh inode means
    // data is never written through an earlier hard link either.
    constexpr int kFlags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
    UniqueFd fd(::openat(parent.get(), leaf, kFlags, 0600));
    if (!fd && errno == EEXIST) {
      DIYC_RETURN_IF_ERROR(RemoveTreeAt(parent.get(), path.back()));
      fd.Reset(::openat(parent.get(), leaf, kFlags, 0600));
    }
    if (!fd) return ErrnoError(errno, "create file");
    const uint64_t budget = options_.max_bytes - stats_.bytes;
    DIYC_RETURN_IF_ERROR(write_data(fd.get(), budget));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat file");
    if (static_cast<uint64_t>(st.st_size) > budget) return BytesExhausted();
    stats_.bytes += static_cast<uint64_t>(st.st_size);
    DIYC_RETURN_IF_ERROR(ApplyMeta(fd.get(), meta, FileModeMask()));
    ++stats_.files;
    return absl::OkStatus();
  }

  absl::Status AddSymlink(const Components& path, const std::string& target, const Meta& meta) {
    DIYC_RETURN_IF_ERROR(CountEntry());
    if (path.empty()) return absl::InvalidArgumentError("a symlink cannot replace the image root");
    if (target.empty()) return absl::InvalidArgumentError("empty symlink target");
    if (target.find('\0') != std::string::npos) return absl::InvalidArgumentError("symlink target contains a NUL byte");
    if (target.size() > kPathMax) return absl::InvalidArgumentError("symlink target longer than 4095 bytes");
    DIYC_ASSIGN_OR_RETURN(UniqueFd parent, OpenDir(path, path.size() - 1, /*create=*/true));
    const char* leaf = path.back().c_str();
    if (::symlinkat(target.c_str(), parent.get(), leaf) != 0) {
      if (errno != EEXIST) return ErrnoError(errno, "create symlink");
      DIYC_RETURN_IF_ERROR(RemoveTreeAt(parent.get(), path.back()));
      if (::symlinkat(target.c_str(), parent.get(), leaf) != 0) return ErrnoError(errno, "create symlink");
    }
    if (chown_ && ::fchownat(parent.get(), leaf, meta.uid, meta.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoError(errno, "set symlink owner");
    }
    const struct timespec times[2] = {meta.mtime, meta.mtime};
    if (::utimensat(parent.get(), leaf, times, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError(errno, "set symlink time");
    ++stats_.symlinks;
    return absl::OkStatus();
  }

  absl::Status AddHardLink(const Components& path, const Components& target) {
    DIYC_RETURN_IF_ERROR(CountEntry());
    if (path.empty()) return absl::InvalidArgumentError("a hard link cannot replace the image root");
    const std::string target_name = Join(target);
    auto not_in_image = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("hard link target ", Quote(target_name), " ", why));
    };
    if (target.empty()) return not_in_image("is the image root");
    absl::StatusOr<UniqueFd> target_parent = OpenDir(target, target.size() - 1, /*create=*/false);
    if (!target_parent.ok()) return not_in_image("is not in the image");
    struct stat target_st;
    if (::fstatat(target_parent->get(), target.back().c_str(), &target_st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return not_in_image("is not in the image");
      return ErrnoError(errno, "stat hard link target");
    }
    if (S_ISDIR(target_st.st_mode)) return not_in_image("is a directory");

    DIYC_ASSIGN_OR_RETURN(UniqueFd parent, OpenDir(path, path.size() - 1, /*create=*/true));
    const char* leaf = path.back().c_str();
    struct stat existing;
    if (::fstatat(parent.get(), leaf, &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      if (existing.st_dev == target_st.st_dev && existing.st_ino == target_st.st_ino) {
        ++stats_.hard_links;  // already the same inode (a link to itself)
        return absl::OkStatus();
      }
      DIYC_RETURN_IF_ERROR(RemoveTreeAt(parent.get(), path.back()));
    }
    // Flags 0: a symlink target is linked itself, never followed.
    if (::linkat(target_parent->get(), target.back().c_str(), parent.get(), leaf, 0) != 0) {
      if (errno == ENOENT) return not_in_image("is not in the image");
      return ErrnoError(errno, "create hard link");
    }
    ++stats_.hard_links;
    return absl::OkStatus();
  }

  absl::Status Skip() {
    DIYC_RETURN_IF_ERROR(CountEntry());
    ++stats_.skipped;
    return absl::OkStatus();
  }

  // Gives directories their final owner, mode and mtime (children first, so
  // a read-only parent does not get in the way), then the root.
  absl::Status Finish() {
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      const auto& [path, meta] = *it;
      absl::StatusOr<UniqueFd> parent = OpenDir(path, path.size() - 1, /*create=*/false);
      if (!parent.ok()) continue;  // replaced by a later entry
      UniqueFd dir(::openat(parent->get(), path.back().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;  // replaced
        return Annotate(ErrnoError(errno, "open directory"), absl::StrCat("entry ", Quote(Join(path))));
      }
      absl::Status status = ApplyMeta(dir.get(), meta, DirModeMask());
      if (!status.ok()) return Annotate(status, absl::StrCat("entry ", Quote(Join(path))));
    }
    Meta root = root_meta_.value_or(Meta{});
    root.mode = 0755;
    if (!root_meta_) {
      if (::fchmod(root_.get(), 0755) != 0) return ErrnoError(errno, "set image root mode");
      return absl::OkStatus();
    }
    return Annotate(ApplyMeta(root_.get(), root, DirModeMask()), "image root");
  }

  // Removes everything written so far, the destination directory included.
  absl::Status Abort() {
    root_.Reset();
    return RemoveTreeAt(parent_.get(), name_);
  }

 private:
  explicit TreeWriter(const ImportOptions& options) : options_(options), chown_(::geteuid() == 0) {}

  uint32_t FileModeMask() const { return options_.keep_setid_bits ? 07777 : 01777; }
  uint32_t DirModeMask() const { return options_.keep_setid_bits ? 07777 : 03777; }

  absl::Status BytesExhausted() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("image file data exceeds the limit of ", options_.max_bytes, " bytes"));
  }

  absl::Status CountEntry() {
    if (++entries_ > options_.max_entries) {
      return absl::ResourceExhaustedError(absl::StrCat("image has more than ", options_.max_entries, " entries"));
    }
    return absl::OkStatus();
  }

  void RecordDirectory(const Components& path, const Meta& meta) {
    auto [it, inserted] = dir_index_.try_emplace(Join(path), dirs_.size());
    if (inserted) {
      dirs_.emplace_back(path, meta);
    } else {
      dirs_[it->second].second = meta;  // a later entry for the same directory wins
    }
  }

  // Owner first: chown clears setuid/setgid, so the mode is set after it.
  absl::Status ApplyMeta(int fd, const Meta& meta, uint32_t mode_mask) {
    if (chown_ && ::fchown(fd, meta.uid, meta.gid) != 0) return ErrnoError(errno, "set owner");
    if (::fchmod(fd, meta.mode & mode_mask) != 0) return ErrnoError(errno, "set mode");
    const struct timespec times[2] = {meta.mtime, meta.mtime};
    if (::futimens(fd, times) != 0) return ErrnoError(errno, "set modification time");
    return absl::OkStatus();
  }

  static absl::Status ParentError(const std::string& prefix, const absl::Status& status) {
    std::optional<int> error = StatusErrno(status);
    if (error && (*error == ENOENT || *error == ENOTDIR || *error == ELOOP || *error == EXDEV)) {
      return absl::InvalidArgumentError(absl::StrCat("parent ", Quote(prefix),
                                                     " does not resolve to a directory inside the image (",
                                                     std::strerror(*error), ")"));
    }
    return status;
  }

  // Opens (O_PATH) the directory named by the first `depth` components,
  // resolved inside the image root; with `create`, missing directories are
  // made 0755 on the way, as tar does for archives without directory entries.
  absl::StatusOr<UniqueFd> OpenDir(const Components& path, size_t depth, bool create) {
    const std::string whole = Join(path, depth);
    absl::StatusOr<UniqueFd> fd = OpenAt2(root_.get(), whole, O_PATH | O_DIRECTORY, kInRoot);
    if (fd.ok()) return fd;
    if (!create || StatusErrno(fd.status()) != ENOENT) return ParentError(whole, fd.status());
    DIYC_ASSIGN_OR_RETURN(UniqueFd current, OpenAt2(root_.get(), ".", O_PATH | O_DIRECTORY, kInRoot));
    for (size_t i = 0; i < depth; ++i) {
      const std::string prefix = Join(path, i + 1);
      absl::StatusOr<UniqueFd> next = OpenAt2(root_.get(), prefix, O_PATH | O_DIRECTORY, kInRoot);
      if (!next.ok() && StatusErrno(next.status()) == ENOENT) {
        // `current` is prefix i resolved in root, so the new directory is
        // exactly where resolving prefix i+1 will look. If path[i] is a
        // dangling symlink, mkdirat fails with EEXIST and the reopen below
        // reports the missing target.
        if (::mkdirat(current.get(), path[i].c_str(), 0700) == 0) {
          RecordDirectory(Components(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(i + 1)), Meta{});
        } else if (errno != EEXIST) {
          return ErrnoAt(errno, "create directory", prefix);
        }
        next = OpenAt2(root_.get(), prefix, O_PATH | O_DIRECTORY, kInRoot);
      }
      if (!next.ok()) return ParentError(prefix, next.status());
      current = std::move(*next);
    }
    return current;
  }

  ImportOptions options_;
  bool chown_;
  UniqueFd parent_;   // the directory that holds the destination
  std::string name_;  // the destination's name in it
  UniqueFd root_;     // the destination itself
  dev_t root_dev_ = 0;
  ino_t root_ino_ = 0;
  uint64_t entries_ = 0;
  ImageStats stats_;
  std::optional<Meta> root_meta_;
  std::vector<std::pair<Components, Meta>> dirs_;  // final metadata, applied by Finish
  std::unordered_map<std::string, size_t> dir_index_;
};

// Creates the writer, runs `body`, finishes; on any failure removes the
// destination again and reports if even that failed.
absl::StatusOr<ImageStats> RunImport(const std::string& dest_dir, const ImportOptions& options,
                                     absl::FunctionRef<absl::Status(TreeWriter&)> body) {
  DIYC_ASSIGN_OR_RETURN(TreeWriter writer, TreeWriter::Create(dest_dir, options));
  absl::Status status = body(writer);
  if (status.ok()) status = writer.Finish();
  if (status.ok()) return writer.stats();
  absl::Status cleanup = writer.Abort();
  if (!cleanup.ok()) {
    return AppendMessage(status, absl::StrCat(" (removing the partial image failed too: ", cleanup.message(), ")"));
  }
  return status;
}

absl::StatusOr<Meta> MetaFromTar(const TarEntry& entry) {
  // (uid_t)-1 means "leave unchanged" to chown, so it cannot be an owner.
  constexpr uint64_t kMaxId = 0xfffffffe;
  if (entry.uid > kMaxId || entry.gid > kMaxId) {
    return absl::InvalidArgumentError(absl::StrCat("owner ", entry.uid, ":", entry.gid, " out of range"));
  }
  Meta meta;
  meta.mode = entry.mode;
  meta.uid = static_cast<uint32_t>(entry.uid);
  meta.gid = static_cast<uint32_t>(entry.gid);
  meta.mtime = {static_cast<time_t>(entry.mtime_sec), static_cast<long>(entry.mtime_nsec)};
  return meta;
}

absl::Status ExtractEntry(TarReader& reader, const TarEntry& entry, TreeWriter& writer,
                          std::unordered_set<std::string>& skipped) {
  DIYC_ASSIGN_OR_RETURN(Components path, SplitEntryPath(entry.path));
  DIYC_ASSIGN_OR_RETURN(Meta meta, MetaFromTar(entry));
  const std::string key = Join(path);
  switch (entry.type) {
    case TarEntryType::kDirectory:
      skipped.erase(key);
      return writer.AddDirectory(path, meta);
    case TarEntryType::kFile:
      skipped.erase(key);
      return writer.AddFile(path, meta, [&](int fd, uint64_t budget) -> absl::Status {
        if (entry.size > budget) {
          return absl::ResourceExhaustedError(
              absl::StrCat("file of ", entry.size, " bytes exceeds the image's remaining data limit"));
        }
        return reader.CopyData(fd);
      });
    case TarEntryType::kSymlink:
      skipped.erase(key);
      return writer.AddSymlink(path, entry.link_target, meta);
    case TarEntryType::kHardLink: {
      absl::StatusOr<Components> target = SplitEntryPath(entry.link_target);
      if (!target.ok()) return Annotate(target.status(), absl::StrCat("hard link target ", Quote(entry.link_target)));
      if (skipped.count(Join(*target)) != 0) {
        skipped.insert(key);
        return writer.Skip();
      }
      skipped.erase(key);
      return writer.AddHardLink(path, *target);
    }
    case TarEntryType::kCharDevice:
    case TarEntryType::kBlockDevice:
    case TarEntryType::kFifo:
    case TarEntryType::kOther:
      skipped.insert(key);
      return writer.Skip();
  }
  return absl::InternalError("unhandled tar entry type");
}

absl::Status ExtractArchive(int tar_fd, uint64_t known_size, TreeWriter& writer) {
  TarReader reader(tar_fd, known_size);
  std::unordered_set<std::string> skipped;
  TarEntry entry;
  while (true) {
    DIYC_ASSIGN_OR_RETURN(bool more, reader.Next(entry));
    if (!more) return absl::OkStatus();
    absl::Status status = ExtractEntry(reader, entry, writer, skipped);
    if (!status.ok()) return Annotate(status, absl::StrCat("entry ", Quote(entry.path)));
  }
}

absl::Status CopyFileData(int in_fd, int out_fd, uint64_t budget) {
  std::vector<char> buffer(kCopyBuffer);
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(in_fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "read source file");
    if (n == 0) return absl::OkStatus();
    total += static_cast<uint64_t>(n);
    if (total > budget) {
      return absl::ResourceExhaustedError("file exceeds the image's remaining data limit");
    }
    const char* p = buffer.data();
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      ssize_t written = ::write(out_fd, p, left);
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) return ErrnoError(errno, "write file data");
      p += written;
      left -= static_cast<size_t>(written);
    }
  }
}

struct FileIdHash {
  size_t operator()(const std::pair<dev_t, ino_t>& id) const {
    return std::hash<uint64_t>()(static_cast<uint64_t>(id.first) * 0x9e3779b97f4a7c15ull ^ id.second);
  }
};
using LinkMap = std::unordered_map<std::pair<dev_t, ino_t>, Components, FileIdHash>;

absl::Status CopyEntry(int dir_fd, const std::string& name, const Components& path, TreeWriter& writer,
                       LinkMap& linked, std::vector<Components>& pending) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // removed while we walk
    return ErrnoError(errno, "stat");
  }
  if (S_ISDIR(st.st_mode)) {
    if (writer.IsRoot(st)) return writer.Skip();  // the destination lies inside the source
    DIYC_RETURN_IF_ERROR(writer.AddDirectory(path, MetaFromStat(st)));
    pending.push_back(path);
    return absl::OkStatus();
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(kPathMax + 1, '\0');
    ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoError(errno, "read symlink");
    if (static_cast<size_t>(n) > kPathMax) return absl::InvalidArgumentError("symlink target longer than 4095 bytes");
    target.resize(static_cast<size_t>(n));
    return writer.AddSymlink(path, target, MetaFromStat(st));
  }
  if (!S_ISREG(st.st_mode)) return writer.Skip();

  const std::pair<dev_t, ino_t> id(st.st_dev, st.st_ino);
  if (st.st_nlink > 1) {
    if (auto it = linked.find(id); it != linked.end()) return writer.AddHardLink(path, it->second);
  }
  // O_NONBLOCK: should the name turn into a fifo after the fstatat above,
  // the open must not hang; the fstat below then rejects it.
  UniqueFd in(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!in) return ErrnoError(errno, "open");
  struct stat in_st;
  if (::fstat(in.get(), &in_st) != 0) return ErrnoError(errno, "stat");
  if (!S_ISREG(in_st.st_mode) || in_st.st_dev != st.st_dev || in_st.st_ino != st.st_ino) {
    return absl::AbortedError("changed while being copied");
  }
  DIYC_RETURN_IF_ERROR(writer.AddFile(path, MetaFromStat(in_st), [&](int out_fd, uint64_t budget) {
    return CopyFileData(in.get(), out_fd, budget);
  }));
  if (st.st_nlink > 1) linked.emplace(id, path);
  return absl::OkStatus();
}

absl::Status CopyTree(int src_root, TreeWriter& writer) {
  struct stat root_st;
  if (::fstat(src_root, &root_st) != 0) return ErrnoError(errno, "stat source directory");
  DIYC_RETURN_IF_ERROR(writer.AddDirectory({}, MetaFromStat(root_st)));
  LinkMap linked;
  // Directories still to list, by path: none is held open while waiting,
  // so descriptor use stays constant whatever the tree's depth.
  std::vector<Components> pending = {{}};
  while (!pending.empty()) {
    Components dir_path = std::move(pending.back());
    pending.pop_back();
    const std::string rel = Join(dir_path);
    absl::StatusOr<UniqueFd> dir = OpenAt2(src_root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, kBeneathNoLinks);
    if (!dir.ok()) {
      if (StatusErrno(dir.status()) == EXDEV) continue;  // a mount point: kept as an empty directory
      return Annotate(dir.status(), absl::StrCat("entry ", Quote(rel)));
    }
    DIYC_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(dir->get()));
    std::sort(entries.begin(), entries.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    for (const DirEntry& entry : entries) {
      Components path = dir_path;
      path.push_back(entry.name);
      absl::Status status = CopyEntry(dir->get(), entry.name, path, writer, linked, pending);
      if (!status.ok()) return Annotate(status, absl::StrCat("entry ", Quote(Join(path))));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateImageName(absl::string_view name) {
  auto bad = [&](absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("invalid image name ", Quote(name), ": ", rule));
  };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > kMaxImageNameLen) return bad("longer than 63 bytes");
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return bad("must start with a letter or digit");
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return bad("only letters, digits, '_', '.' and '-' are allowed");
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageStats> ImportDirectory(const std::string& source_dir, const std::string& dest_dir,
                                           const ImportOptions& options) {
  const std::string context = absl::StrCat("import image from directory ", Quote(source_dir));
  UniqueFd source(::open(source_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!source) return Annotate(ErrnoError(errno, "open source directory"), context);
  absl::StatusOr<ImageStats> stats =
      RunImport(dest_dir, options, [&](TreeWriter& writer) { return CopyTree(source.get(), writer); });
  if (!stats.ok()) return Annotate(stats.status(), context);
  return stats;
}

absl::StatusOr<ImageStats> ImportTar(const std::string& tar_path, const std::string& dest_dir,
                                     const ImportOptions& options) {
  const std::string context = absl::StrCat("import image from tar ", Quote(tar_path));
  UniqueFd archive(::open(tar_path.c_str(), O_RDONLY | O_NOCTTY | O_CLOEXEC));
  if (!archive) return Annotate(ErrnoError(errno, "open archive"), context);
  struct stat st;
  if (::fstat(archive.get(), &st) != 0) return Annotate(ErrnoError(errno, "stat archive"), context);
  if (S_ISDIR(st.st_mode)) return Annotate(absl::InvalidArgumentError("is a directory, not a tar archive"), context);
  const uint64_t known_size = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  absl::StatusOr<ImageStats> stats = RunImport(
      dest_dir, options, [&](TreeWriter& writer) { return ExtractArchive(archive.get(), known_size, writer); });
  if (!stats.ok()) return Annotate(stats.status(), context);
  return stats;
}

absl::Status RemoveTree(const std::string& dir) {
  const std::string context = absl::StrCat("remove tree ", Quote(dir));
  UniqueFd parent;
  std::string name;
  absl::Status status = OpenContainingDir(dir, parent, name);
  if (status.ok()) status = RemoveTreeAt(parent.get(), name);
  return Annotate(status, context);
}

}  // namespace diyc::netcore
