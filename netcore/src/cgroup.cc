// The cgroup façade: validation, layout detection, and the helpers both
// backends share. The backends live in cgroup_v1.cc and cgroup_v2.cc.
#include "diyc/netcore/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"
#include "cgroup_internal.h"

namespace diyc::netcore {
namespace cgroup_internal {
namespace {

// "/a/b/" -> "/a/b"; "/" stays.
absl::string_view TrimSlashes(absl::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

// True when path is ancestor itself or lies below it.
bool IsAtOrBelow(absl::string_view path, absl::string_view ancestor) {
  if (ancestor == "/") return true;
  if (!absl::StartsWith(path, ancestor)) return false;
  return path.size() == ancestor.size() || path[ancestor.size()] == '/';
}

bool IsBelow(absl::string_view path, absl::string_view ancestor) {
  return path != ancestor && IsAtOrBelow(path, ancestor);
}

// mountinfo escapes ' ', '\t', '\n' and '\\' in paths as "\ooo".
std::string UnescapeMountPath(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      absl::string_view digits = field.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>(((digits[0] - '0') << 6) | ((digits[1] - '0') << 3) | (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

struct MountEntry {
  int64_t id = 0;
  int64_t parent_id = 0;
  std::string mount_point;
  std::string fstype;
  std::vector<std::string> super_options;
};

absl::StatusOr<std::vector<MountEntry>> ParseMountinfo(absl::string_view text) {
  std::vector<MountEntry> entries;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 10 || dash - fields.begin() < 6 || fields.end() - dash < 4) {
      return absl::InvalidArgumentError(absl::StrCat("malformed mountinfo line ", Quote(line)));
    }
    MountEntry entry;
    if (!absl::SimpleAtoi(fields[0], &entry.id) || !absl::SimpleAtoi(fields[1], &entry.parent_id)) {
      return absl::InvalidArgumentError(absl::StrCat("malformed mountinfo line ", Quote(line)));
    }
    entry.mount_point = UnescapeMountPath(fields[4]);
    entry.fstype = std::string(dash[1]);
    entry.super_options = absl::StrSplit(dash[3], ',');
    entries.push_back(std::move(entry));
  }
  return entries;
}

// True when the mount with id ancestor_id is entry's parent, grandparent...
bool IsAncestor(const std::vector<MountEntry>& entries, int64_t ancestor_id, const MountEntry& entry) {
  int64_t id = entry.parent_id;
  // Bounded: a corrupt table could hold a cycle.
  for (size_t steps = 0; steps <= entries.size(); ++steps) {
    if (id == ancestor_id) return true;
    auto parent = std::find_if(entries.begin(), entries.end(), [id](const MountEntry& e) { return e.id == id; });
    if (parent == entries.end() || parent->id == parent->parent_id) return false;
    id = parent->parent_id;
  }
  return false;
}

}  // namespace

std::string CgroupMounts::V1MountPoint(absl::string_view controller) const {
  for (const auto& [name, mount_point] : v1) {
    if (name == controller) return mount_point;
  }
  return "";
}

absl::StatusOr<CgroupMounts> FindCgroupMounts(absl::string_view mountinfo, absl::string_view root) {
  root = TrimSlashes(root);
  DIYC_ASSIGN_OR_RETURN(std::vector<MountEntry> entries, ParseMountinfo(mountinfo));
  CgroupMounts mounts;
  for (size_t i = 0; i < entries.size(); ++i) {
    const MountEntry& entry = entries[i];
    const bool at_root = entry.mount_point == root;
    if (!at_root && (entry.fstype != "cgroup" || !IsBelow(entry.mount_point, root))) continue;
    // A later mount on this path or above it hides this one, unless it is
    // one this mount sits on (then it came later only in listing order, as
    // after a move). Checked only for the few relevant entries: hosts
    // running many containers have thousands of mounts.
    const bool hidden = std::any_of(entries.begin() + i + 1, entries.end(), [&](const MountEntry& later) {
      return IsAtOrBelow(entry.mount_point, later.mount_point) && !IsAncestor(entries, later.id, entry);
    });
    if (hidden) continue;
    if (at_root) {
      mounts.v2_at_root = entry.fstype == "cgroup2";
      continue;
    }
    for (absl::string_view controller : kV1Controllers) {
      if (std::find(entry.super_options.begin(), entry.super_options.end(), controller) ==
          entry.super_options.end()) {
        continue;
      }
      // A hierarchy bind-mounted twice: the first visible mount point will do.
      if (mounts.V1MountPoint(controller).empty()) {
        mounts.v1.emplace_back(std::string(controller), entry.mount_point);
      }
    }
  }
  // Keep kV1Controllers order whatever the mount order was.
  std::vector<std::pair<std::string, std::string>> ordered;
  for (absl::string_view controller : kV1Controllers) {
    std::string mount_point = mounts.V1MountPoint(controller);
    if (!mount_point.empty()) ordered.emplace_back(std::string(controller), mount_point);
  }
  mounts.v1 = std::move(ordered);
  return mounts;
}

absl::StatusOr<CgroupLayout> LayoutOf(const CgroupMounts& mounts, absl::string_view root) {
  if (mounts.v2_at_root) return CgroupLayout::kV2;
  for (absl::string_view controller : {"memory", "pids", "cpu"}) {
    if (!mounts.V1MountPoint(controller).empty()) return CgroupLayout::kV1;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no cgroup hierarchy for memory, pids or cpu: ", root,
                   " is not a cgroup2 mount and no cgroup v1 hierarchy below it carries those controllers"));
}

int64_t CpuQuotaUs(double cpus) { return std::llround(cpus * static_cast<double>(kCgroupCpuPeriodUs)); }

std::string V2MemoryMax(int64_t bytes) { return bytes == 0 ? "max" : absl::StrCat(bytes); }

std::string V2PidsMax(int64_t pids) { return pids == 0 ? "max" : absl::StrCat(pids); }

std::string V2CpuMax(double cpus) {
  return absl::StrCat(cpus == 0 ? std::string("max") : absl::StrCat(CpuQuotaUs(cpus)), " ", kCgroupCpuPeriodUs);
}

absl::StatusOr<int64_t> ParseKeyedValue(absl::string_view text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first != key) continue;
    int64_t value = 0;
    if (!absl::SimpleAtoi(kv.second, &value)) {
      return absl::InternalError(absl::StrCat("bad value for ", key, ": ", Quote(line)));
    }
    return value;
  }
  return absl::NotFoundError(absl::StrCat("no ", key, " line"));
}

absl::StatusOr<int64_t> ParseSingleValue(absl::string_view text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return absl::InternalError(absl::StrCat("expected a number, got ", Quote(text)));
  }
  return value;
}

absl::StatusOr<std::vector<pid_t>> ParsePids(absl::string_view text) {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    int32_t pid = 0;
    if (!absl::SimpleAtoi(line, &pid) || pid <= 0) {
      return absl::InternalError(absl::StrCat("expected a pid, got ", Quote(line)));
    }
    pids.push_back(pid);
  }
  return pids;
}

std::vector<std::string> SplitControllers(absl::string_view text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return dir == "/" ? absl::StrCat("/", name) : absl::StrCat(dir, "/", name);
}

absl::Status WriteCgroupFile(const std::string& path, absl::string_view value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  // cgroupfs applies a value in one write; a short write is an error.
  if (!fd || write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoError(errno, absl::StrCat("write ", value, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadCgroupFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, absl::StrCat("read ", path));
  std::string text;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

absl::StatusOr<std::optional<std::string>> ReadCgroupFileIfExists(const std::string& path) {
  absl::StatusOr<std::string> text = ReadCgroupFile(path);
  if (!text.ok()) {
    if (StatusErrno(text.status()) == ENOENT) return std::optional<std::string>();
    return text.status();
  }
  return std::optional<std::string>(*std::move(text));
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

absl::Status MakeCgroupDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat("cgroup ", path, " already exists"));
    return ErrnoError(errno, absl::StrCat("create cgroup ", path));
  }
  return absl::OkStatus();
}

absl::Status EnsureCgroupDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("create cgroup ", path));
  }
  return absl::OkStatus();
}

namespace {

// Names of the cgroups directly below dir; ENOENT when dir is gone.
absl::StatusOr<std::vector<std::string>> ListChildCgroups(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("list cgroup ", dir));
  DIR* stream = fdopendir(fd);
  if (stream == nullptr) {
    int error = errno;
    close(fd);
    return ErrnoError(error, absl::StrCat("list cgroup ", dir));
  }
  absl::Cleanup closer = [stream] { closedir(stream); };
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = readdir(stream)) {
    absl::string_view name = entry->d_name;
    // kernfs fills in d_type, and the only directories in a cgroup are cgroups.
    if (entry->d_type == DT_DIR && name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return ErrnoError(errno, absl::StrCat("list cgroup ", dir));
  return names;
}

}  // namespace

absl::Status RemoveCgroupTree(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> children = ListChildCgroups(path);
  if (!children.ok()) {
    if (StatusErrno(children.status()) == ENOENT) return absl::OkStatus();
    return children.status();
  }
  for (const std::string& child : *children) {
    // A cgroup with a child left cannot go either; no point in waiting.
    DIYC_RETURN_IF_ERROR(RemoveCgroupTree(JoinPath(path, child)));
  }
  for (int attempt = 1;; ++attempt) {
    if (rmdir(path.c_str()) == 0 || errno == ENOENT) return absl::OkStatus();
    if (errno != EBUSY || attempt >= kRmdirAttempts) {
      int error = errno;
      return ErrnoError(error, absl::StrCat("remove cgroup ", path),
                        error == EBUSY ? "it still has processes" : "");
    }
    absl::SleepFor(kRmdirRetryDelay);
  }
}

absl::Status AppendPidsInTree(const std::string& dir, std::vector<pid_t>* pids) {
  DIYC_ASSIGN_OR_RETURN(std::string text, ReadCgroupFile(JoinPath(dir, "cgroup.procs")));
  DIYC_ASSIGN_OR_RETURN(std::vector<pid_t> here, ParsePids(text));
  pids->insert(pids->end(), here.begin(), here.end());
  absl::StatusOr<std::vector<std::string>> children = ListChildCgroups(dir);
  if (!children.ok()) {
    if (StatusErrno(children.status()) == ENOENT) return absl::OkStatus();
    return children.status();
  }
  for (const std::string& child : *children) {
    absl::Status status = AppendPidsInTree(JoinPath(dir, child), pids);
    if (!status.ok() && StatusErrno(status) != ENOENT) return status;
  }
  return absl::OkStatus();
}

void SortUnique(std::vector<pid_t>* pids) {
  std::sort(pids->begin(), pids->end());
  pids->erase(std::unique(pids->begin(), pids->end()), pids->end());
}

absl::Status KillPids(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    if (kill(pid, SIGKILL) != 0 && errno != ESRCH) {
      return ErrnoError(errno, absl::StrCat("kill process ", pid));
    }
  }
  return absl::OkStatus();
}

absl::Status KillUntilEmpty(absl::string_view what, absl::FunctionRef<absl::Status()> round,
                            absl::FunctionRef<absl::StatusOr<bool>()> is_empty, absl::Duration timeout) {
  constexpr absl::Duration kPoll = absl::Milliseconds(10);
  constexpr absl::Duration kRoundEvery = absl::Milliseconds(500);
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    DIYC_RETURN_IF_ERROR(round());
    const absl::Time next_round = std::min(deadline, absl::Now() + kRoundEvery);
    while (true) {
      DIYC_ASSIGN_OR_RETURN(bool empty, is_empty());
      if (empty) return absl::OkStatus();
      if (absl::Now() >= next_round) break;
      absl::SleepFor(kPoll);
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("kill every process in cgroup ", what, ": still not empty after ",
                                                      absl::FormatDuration(timeout)));
    }
  }
}

absl::Status ValidateCgroupParent(absl::string_view parent) {
  if (parent.empty() || parent.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat("invalid cgroup parent ", Quote(parent),
                                                   ": must be 1-255 bytes of '/'-separated names"));
  }
  for (absl::string_view component : absl::StrSplit(parent, '/')) {
    absl::Status status = ValidateCgroupName(component);
    if (!status.ok()) return Annotate(status, absl::StrCat("invalid cgroup parent ", Quote(parent)));
  }
  return absl::OkStatus();
}

}  // namespace cgroup_internal

using namespace cgroup_internal;  // NOLINT: this file implements them

absl::string_view CgroupLayoutName(CgroupLayout layout) { return layout == CgroupLayout::kV1 ? "v1" : "v2"; }

absl::StatusOr<CgroupLayout> DetectCgroupLayoutFromMountinfo(absl::string_view mountinfo, absl::string_view root) {
  DIYC_ASSIGN_OR_RETURN(CgroupMounts mounts, FindCgroupMounts(mountinfo, root));
  return LayoutOf(mounts, root);
}

absl::StatusOr<CgroupLayout> DetectCgroupLayout() {
  DIYC_ASSIGN_OR_RETURN(std::string mountinfo, ReadCgroupFile("/proc/self/mountinfo"));
  return DetectCgroupLayoutFromMountinfo(mountinfo);
}

absl::Status ValidateCgroupName(absl::string_view name) {
  auto allowed = [](char c) { return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-'; };
  if (name.empty() || name.size() > 63 || !absl::ascii_isalnum(name[0]) ||
      !std::all_of(name.begin(), name.end(), allowed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid cgroup name ", Quote(name), ": must match [A-Za-z0-9][A-Za-z0-9_.-]{0,62}"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCgroupLimits(const CgroupLimits& limits) {
  if (limits.memory_bytes != 0 && limits.memory_bytes < kMinCgroupMemoryBytes) {
    return absl::InvalidArgumentError(absl::StrCat("memory limit ", limits.memory_bytes,
                                                   " bytes: must be 0 (unlimited) or at least ",
                                                   kMinCgroupMemoryBytes, " bytes (6 MiB)"));
  }
  if (limits.pids < 0 || limits.pids > kMaxCgroupPids) {
    return absl::InvalidArgumentError(
        absl::StrCat("pids limit ", limits.pids, ": must be 0 (unlimited) or 1-", kMaxCgroupPids));
  }
  if (!std::isfinite(limits.cpus) ||
      (limits.cpus != 0 && (limits.cpus < kMinCgroupCpus || limits.cpus > kMaxCgroupCpus))) {
    return absl::InvalidArgumentError(absl::StrCat("cpu limit ", limits.cpus, ": must be 0 (unlimited) or ",
                                                   kMinCgroupCpus, "-", kMaxCgroupCpus, " CPUs"));
  }
  return absl::OkStatus();
}

namespace {

struct Resolved {
  CgroupLayout layout;
  std::string root;
  CgroupMounts mounts;  // kV1 only
};

absl::Status CheckCgroup2(const std::string& root) {
  struct statfs fs;
  if (statfs(root.c_str(), &fs) != 0) return ErrnoError(errno, absl::StrCat("statfs cgroup root ", root));
  if (fs.f_type != CGROUP2_SUPER_MAGIC) {
    return absl::FailedPreconditionError(absl::StrCat(root, " is not a cgroup2 mount"));
  }
  return absl::OkStatus();
}

// Validates names, then finds the hierarchies the options point at.
absl::StatusOr<Resolved> Resolve(absl::string_view name, const CgroupOptions& options) {
  DIYC_RETURN_IF_ERROR(ValidateCgroupName(name));
  DIYC_RETURN_IF_ERROR(ValidateCgroupParent(options.parent));
  if (options.root.empty() || options.root[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("cgroup root ", Quote(options.root), " must be an absolute path"));
  }
  Resolved resolved{CgroupLayout::kV2, std::string(TrimSlashes(options.root)), {}};
  if (options.layout == CgroupLayout::kV2) {
    DIYC_RETURN_IF_ERROR(CheckCgroup2(resolved.root));
    return resolved;
  }
  DIYC_ASSIGN_OR_RETURN(std::string mountinfo, ReadCgroupFile("/proc/self/mountinfo"));
  DIYC_ASSIGN_OR_RETURN(resolved.mounts, FindCgroupMounts(mountinfo, resolved.root));
  if (options.layout.has_value()) {
    resolved.layout = *options.layout;
  } else {
    DIYC_ASSIGN_OR_RETURN(resolved.layout, LayoutOf(resolved.mounts, resolved.root));
  }
  if (resolved.layout == CgroupLayout::kV2) {
    DIYC_RETURN_IF_ERROR(CheckCgroup2(resolved.root));
  } else if (resolved.mounts.v1.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no cgroup v1 hierarchy for memory, pids, cpu or freezer below ", resolved.root));
  }
  return resolved;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroup(absl::string_view name, const CgroupLimits& limits,
                                                     const CgroupOptions& options) {
  DIYC_RETURN_IF_ERROR(ValidateCgroupLimits(limits));
  DIYC_ASSIGN_OR_RETURN(Resolved resolved, Resolve(name, options));
  // The parent is shared (every diycd on the host uses "diyc" by default),
  // and whoever removes the last cgroup in it removes it too
  // (RemoveCgroupParentIfUnused): it can vanish between our making sure it
  // exists and our making the new cgroup in it, which fails with ENOENT. A
  // failed create has undone itself, so it is simply tried again. Under
  // steady contention (two owners creating and removing in a loop, slowed
  // down by sanitizers) about half the attempts lose, so give it many.
  constexpr int kAttempts = 100;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup =
        resolved.layout == CgroupLayout::kV2
            ? CreateCgroupV2(resolved.root, options.parent, name, limits)
            : CreateCgroupV1(resolved.mounts, resolved.root, options.parent, name, limits);
    if (cgroup.ok() || StatusErrno(cgroup.status()) != ENOENT || attempt == kAttempts) return cgroup;
  }
}

absl::Status RemoveCgroupParentIfUnused(const CgroupOptions& options) {
  // Resolve wants a cgroup name; any valid one will do to find the mounts.
  DIYC_ASSIGN_OR_RETURN(Resolved resolved, Resolve("x", options));
  std::vector<std::string> dirs;
  if (resolved.layout == CgroupLayout::kV2) {
    dirs.push_back(JoinPath(resolved.root, options.parent));
  } else {
    for (const auto& [controller, mount_point] : resolved.mounts.v1) dirs.push_back(JoinPath(mount_point, options.parent));
  }
  for (const std::string& dir : dirs) {
    // Busy or not empty means another container still uses it: fine.
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != EBUSY && errno != ENOTEMPTY) {
      return ErrnoError(errno, absl::StrCat("remove cgroup ", Quote(dir)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroup(absl::string_view name, const CgroupOptions& options) {
  DIYC_ASSIGN_OR_RETURN(Resolved resolved, Resolve(name, options));
  if (resolved.layout == CgroupLayout::kV2) return OpenCgroupV2(resolved.root, options.parent, name);
  return OpenCgroupV1(resolved.mounts, resolved.root, options.parent, name);
}

}  // namespace diyc::netcore
