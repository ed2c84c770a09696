// Pieces shared by the cgroup v1 and v2 backends (cgroup_v1.cc,
// cgroup_v2.cc) and the façade (cgroup.cc): mount table parsing, value
// formatting and parsing, and cgroupfs file and directory helpers. Declared
// here rather than in the public header so that the unit tests can reach the
// pure parts without them becoming API.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "diyc/netcore/cgroup.h"

namespace diyc::netcore::cgroup_internal {

// The v1 hierarchies a container joins, in the order they are created.
// cpuacct is not listed: it only matters where it is co-mounted with cpu
// (then it is the same directory).
inline constexpr absl::string_view kV1Controllers[] = {"memory", "pids", "cpu", "freezer"};
// The v2 controllers enabled for containers.
inline constexpr absl::string_view kV2Controllers[] = {"memory", "pids", "cpu"};

// How long KillAll waits for a cgroup to empty.
inline constexpr absl::Duration kKillTimeout = absl::Seconds(5);
// Remove retries rmdir on EBUSY this often, this far apart: a killed process
// leaves its cgroup a little after it stops running.
inline constexpr int kRmdirAttempts = 20;
inline constexpr absl::Duration kRmdirRetryDelay = absl::Milliseconds(50);

// ---- Mount table ----

// The cgroup mounts visible below a root such as /sys/fs/cgroup.
struct CgroupMounts {
  // The mount visible at root itself is cgroup2.
  bool v2_at_root = false;
  // controller -> mount point, for the kV1Controllers mounted below root, in
  // that order.
  std::vector<std::pair<std::string, std::string>> v1;

  // "" when the controller has no v1 hierarchy below root.
  std::string V1MountPoint(absl::string_view controller) const;
};

// Reads mountinfo text (proc(5)). A mount hidden by a later mount on the same
// path or on a directory above it is ignored. Mount points are unescaped
// ("\040" -> ' '). INVALID_ARGUMENT for a malformed line.
absl::StatusOr<CgroupMounts> FindCgroupMounts(absl::string_view mountinfo, absl::string_view root);

// The layout rule of DetectCgroupLayoutFromMountinfo.
absl::StatusOr<CgroupLayout> LayoutOf(const CgroupMounts& mounts, absl::string_view root);

// ---- Values ----

// cpus * kCgroupCpuPeriodUs, rounded to the nearest microsecond.
int64_t CpuQuotaUs(double cpus);
// v2 file contents for a limit; 0 is "max".
std::string V2MemoryMax(int64_t bytes);
std::string V2PidsMax(int64_t pids);
std::string V2CpuMax(double cpus);  // "<quota> <period>" or "max <period>"

// The value of key in a flat-keyed file ("key value" per line, as
// memory.events, memory.oom_control, cgroup.events). NOT_FOUND without it.
absl::StatusOr<int64_t> ParseKeyedValue(absl::string_view text, absl::string_view key);
// A file holding one integer, such as memory.current.
absl::StatusOr<int64_t> ParseSingleValue(absl::string_view text);
// cgroup.procs: one pid a line.
absl::StatusOr<std::vector<pid_t>> ParsePids(absl::string_view text);

// Controller names in a space-separated list such as cgroup.controllers.
std::vector<std::string> SplitControllers(absl::string_view text);

// ---- Files (every open O_CLOEXEC) ----

std::string JoinPath(absl::string_view dir, absl::string_view name);
// "write <value> to <path>: <strerror>" on failure, errno attached.
absl::Status WriteCgroupFile(const std::string& path, absl::string_view value);
absl::StatusOr<std::string> ReadCgroupFile(const std::string& path);
// nullopt when the file does not exist (a controller that is not enabled).
absl::StatusOr<std::optional<std::string>> ReadCgroupFileIfExists(const std::string& path);
bool PathExists(const std::string& path);

// mkdir 0755: ALREADY_EXISTS when it exists.
absl::Status MakeCgroupDir(const std::string& path);
// mkdir 0755, fine when it exists.
absl::Status EnsureCgroupDir(const std::string& path);
// Removes the cgroup and every cgroup below it, deepest first, retrying
// EBUSY (kRmdirAttempts). A missing directory is fine.
absl::Status RemoveCgroupTree(const std::string& path);
// cgroup.procs of dir and of every cgroup below it, appended to pids.
// NOT_FOUND when dir does not exist; cgroups vanishing during the walk are
// skipped.
absl::Status AppendPidsInTree(const std::string& dir, std::vector<pid_t>* pids);
// Sorts and removes duplicates.
void SortUnique(std::vector<pid_t>* pids);

// SIGKILL to each pid; processes that are already gone are fine.
absl::Status KillPids(const std::vector<pid_t>& pids);

// Runs round, then waits for is_empty, repeating the round every 500 ms,
// until is_empty or timeout (DEADLINE_EXCEEDED naming what).
absl::Status KillUntilEmpty(absl::string_view what, absl::FunctionRef<absl::Status()> round,
                            absl::FunctionRef<absl::StatusOr<bool>()> is_empty, absl::Duration timeout);

absl::Status ValidateCgroupParent(absl::string_view parent);

// ---- Backends ----

absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroupV1(const CgroupMounts& mounts, absl::string_view root,
                                                       absl::string_view parent, absl::string_view name,
                                                       const CgroupLimits& limits);
absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroupV1(const CgroupMounts& mounts, absl::string_view root,
                                                     absl::string_view parent, absl::string_view name);
absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroupV2(absl::string_view root, absl::string_view parent,
                                                       absl::string_view name, const CgroupLimits& limits);
absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroupV2(absl::string_view root, absl::string_view parent,
                                                     absl::string_view name);

// Turns on, for the cgroups below dir, those of controllers that dir offers
// (cgroup.controllers) and has not enabled yet (cgroup.subtree_control). One
// write per controller, so an error names it.
absl::Status EnableControllers(const std::string& dir, absl::Span<const absl::string_view> controllers);

// The v2 kill for kernels without cgroup.kill (before 5.14): freeze, SIGKILL
// every process, thaw, in rounds until the cgroup at dir is empty.
absl::Status KillV2ByFreezing(const std::string& dir, absl::Duration timeout = kKillTimeout);

}  // namespace diyc::netcore::cgroup_internal
