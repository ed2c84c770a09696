// Control groups for containers: one cgroup per container under a diyc
// parent, with memory, pids and CPU limits, statistics, killing and removal,
// on cgroup v1 (including hybrid hosts) and cgroup v2.
//
// The cgroup filesystem is written directly; no program is ever executed.
// Every file is opened O_CLOEXEC. Errors name the value and the file, e.g.
// "write 100000 to /sys/fs/cgroup/cpu/diyc/x/cpu.cfs_quota_us: Invalid argument".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace diyc::netcore {

// Docker's floor: below this a container cannot even start its runtime.
inline constexpr int64_t kMinCgroupMemoryBytes = int64_t{6} << 20;
// The kernel's PID_MAX_LIMIT; pids.max accepts nothing larger.
inline constexpr int64_t kMaxCgroupPids = int64_t{4} << 20;
// CFS period used for every CPU limit, in microseconds.
inline constexpr int64_t kCgroupCpuPeriodUs = 100000;
// The kernel rejects quotas below 1 ms, i.e. 0.01 CPU at a 100 ms period.
inline constexpr double kMinCgroupCpus = 0.01;
inline constexpr double kMaxCgroupCpus = 1024;

struct CgroupLimits {
  // 0: unlimited; else at least kMinCgroupMemoryBytes. Swap is limited too,
  // where the kernel accounts it, so a container cannot escape into swap
  // (v1: memory.memsw.limit_in_bytes = memory_bytes; v2: memory.swap.max = 0).
  int64_t memory_bytes = 0;
  // 0: unlimited; else 1..kMaxCgroupPids processes and threads.
  int64_t pids = 0;
  // 0: unlimited; else a CFS quota of cpus * kCgroupCpuPeriodUs per period,
  // kMinCgroupCpus..kMaxCgroupCpus (0.5 = half of one CPU).
  double cpus = 0;
};

struct CgroupStats {
  bool oom_killed = false;     // oom_kills > 0
  int64_t oom_kills = 0;       // processes the OOM killer killed in the cgroup
  int64_t memory_current = 0;  // bytes charged now; 0 without a memory controller
  // Tasks now, including exited ones not yet reaped (the kernel releases
  // their charge only then); 0 without a pids controller.
  int64_t pids_current = 0;
};

enum class CgroupLayout { kV1, kV2 };

// "v1" / "v2", for messages.
absl::string_view CgroupLayoutName(CgroupLayout layout);

// The layout of /sys/fs/cgroup according to /proc/self/mountinfo.
absl::StatusOr<CgroupLayout> DetectCgroupLayout();

// The same from mountinfo text: kV2 when the mount visible at root is cgroup2;
// kV1 when a cgroup v1 hierarchy below root carries memory, pids or cpu
// (a hybrid host, with cgroup2 at root/unified, counts as v1); otherwise
// FAILED_PRECONDITION.
absl::StatusOr<CgroupLayout> DetectCgroupLayoutFromMountinfo(absl::string_view mountinfo,
                                                             absl::string_view root = "/sys/fs/cgroup");

// One container's cgroup. It holds only paths, so any number may refer to the
// same cgroup (CreateCgroup, then OpenCgroup after a daemon restart).
//
// Thread-safety: methods may be called from several threads at once (there is
// no mutable state in the object; the kernel serialises the file writes), but
// callers should not run KillAll concurrently with AddProcess or another
// KillAll on the same cgroup: a freezer-based kill could thaw the cgroup while
// the other is still killing, or miss a process moved in meanwhile.
class Cgroup {
 public:
  virtual ~Cgroup() = default;

  virtual CgroupLayout layout() const = 0;
  // For messages: the v2 directory, or the first v1 one (memory if mounted).
  virtual std::string path() const = 0;

  // Moves the process into the cgroup of every hierarchy. pid must be > 0
  // (the kernel reads 0 as "the caller").
  virtual absl::Status AddProcess(pid_t pid) = 0;

  // v2: memory.events oom_kill, memory.current, pids.current;
  // v1: memory.oom_control oom_kill, memory.usage_in_bytes, pids.current.
  // A counter whose controller is absent reads 0.
  virtual absl::StatusOr<CgroupStats> Stats() = 0;

  // Every process in the cgroup and in cgroups below it (a container may
  // have created some), sorted, without duplicates.
  virtual absl::StatusOr<std::vector<pid_t>> Pids() = 0;

  // SIGKILLs every process, including ones that ignore SIGTERM or keep
  // forking: v2 writes cgroup.kill when the kernel has it (5.14+), else
  // freezes, kills each process and thaws; v1 does the same with the
  // freezer hierarchy (repeated kill rounds when none is mounted). Then waits
  // up to 5 s for the cgroup to empty (DEADLINE_EXCEEDED if it does not).
  // Processes that exited but are not yet reaped do not count. A cgroup that
  // no longer exists has nothing to kill: OK. Blocks the calling thread.
  virtual absl::Status KillAll() = 0;

  // Removes the cgroup (and any cgroups a container created below it) in
  // every hierarchy, retrying EBUSY for about a second while exiting
  // processes leave. Already removed parts are fine, so a second call is OK.
  // Keeps going after a failure and returns the first one; a cgroup that
  // still has processes gives FAILED_PRECONDITION. The diyc parent stays.
  virtual absl::Status Remove() = 0;
};

struct CgroupOptions {
  // The parent cgroup below each hierarchy's root: one or more '/'-separated
  // components, each like a container name. It never holds processes itself,
  // as cgroup v2 requires of a cgroup that enables controllers for children.
  std::string parent = "diyc";
  // Default: DetectCgroupLayout() for root. With kV2, root must be a cgroup2
  // mount (checked with statfs); with kV1 the hierarchies are the cgroup v1
  // mounts below root listed in /proc/self/mountinfo.
  std::optional<CgroupLayout> layout;
  std::string root = "/sys/fs/cgroup";
};

// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
absl::Status ValidateCgroupName(absl::string_view name);

// INVALID_ARGUMENT naming the field, its value and the accepted range.
absl::Status ValidateCgroupLimits(const CgroupLimits& limits);

// Creates the cgroup <root>/<parent>/<name> (v2) or
// <hierarchy>/<parent>/<name> in the memory, pids, cpu and freezer v1
// hierarchies that are mounted, and applies limits.
//
// Everything is checked before anything is created: INVALID_ARGUMENT for a bad
// name or out-of-range limits; FAILED_PRECONDITION when a limit needs a
// controller that is not available (not mounted on v1, not in
// cgroup.controllers on v2). v2 creates the parent when missing and enables
// +memory +pids +cpu (those the kernel offers) in the subtree_control of root
// and parent. ALREADY_EXISTS when the cgroup exists. On any failure the
// container's cgroup directories created so far are removed again (the shared
// parent is left in place).
absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroup(absl::string_view name, const CgroupLimits& limits,
                                                     const CgroupOptions& options = {});

// An existing cgroup, e.g. after the daemon restarted. NOT_FOUND when it exists
// in no hierarchy. On v1, a cgroup left half-created by a crash opens with the
// hierarchies where it exists, so that Remove can clean it up.
// Removes the shared parent (in every hierarchy) once no cgroup is left in
// it; a parent still in use stays. Nothing to remove is fine.
absl::Status RemoveCgroupParentIfUnused(const CgroupOptions& options = {});

absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroup(absl::string_view name, const CgroupOptions& options = {});

}  // namespace diyc::netcore
