// cgroup v2: one directory in the unified hierarchy.
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "diyc/netcore/cgroup.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "cgroup_internal.h"

namespace diyc::netcore::cgroup_internal {
namespace {

// How long a kill round waits for cgroup.events to report "frozen 1".
constexpr absl::Duration kFreezeWait = absl::Seconds(1);

bool Contains(const std::vector<std::string>& list, absl::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// cgroup.events "populated 0" covers the cgroups below too; a cgroup that is
// gone is empty.
absl::StatusOr<bool> IsEmpty(const std::string& dir) {
  DIYC_ASSIGN_OR_RETURN(std::optional<std::string> events, ReadCgroupFileIfExists(JoinPath(dir, "cgroup.events")));
  if (!events.has_value()) return true;
  DIYC_ASSIGN_OR_RETURN(int64_t populated, ParseKeyedValue(*events, "populated"));
  return populated == 0;
}

class CgroupV2 final : public Cgroup {
 public:
  explicit CgroupV2(std::string dir) : dir_(std::move(dir)) {}

  CgroupLayout layout() const override { return CgroupLayout::kV2; }
  std::string path() const override { return dir_; }

  absl::Status AddProcess(pid_t pid) override {
    if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("add process ", pid, " to cgroup ", dir_, ": bad pid"));
    return WriteCgroupFile(JoinPath(dir_, "cgroup.procs"), absl::StrCat(pid));
  }

  absl::StatusOr<CgroupStats> Stats() override {
    DIYC_RETURN_IF_ERROR(CheckExists());
    CgroupStats stats;
    DIYC_ASSIGN_OR_RETURN(std::optional<std::string> events, ReadCgroupFileIfExists(JoinPath(dir_, "memory.events")));
    if (events.has_value()) {
      // oom_kill arrived in 4.13; older kernels have no count to report.
      absl::StatusOr<int64_t> kills = ParseKeyedValue(*events, "oom_kill");
      if (kills.ok()) stats.oom_kills = *kills;
    }
    DIYC_ASSIGN_OR_RETURN(std::optional<std::string> memory, ReadCgroupFileIfExists(JoinPath(dir_, "memory.current")));
    if (memory.has_value()) {
      DIYC_ASSIGN_OR_RETURN(stats.memory_current, ParseSingleValue(*memory));
    }
    DIYC_ASSIGN_OR_RETURN(std::optional<std::string> pids, ReadCgroupFileIfExists(JoinPath(dir_, "pids.current")));
    if (pids.has_value()) {
      DIYC_ASSIGN_OR_RETURN(stats.pids_current, ParseSingleValue(*pids));
    }
    stats.oom_killed = stats.oom_kills > 0;
    return stats;
  }

  absl::StatusOr<std::vector<pid_t>> Pids() override {
    std::vector<pid_t> pids;
    DIYC_RETURN_IF_ERROR(AppendPidsInTree(dir_, &pids));
    SortUnique(&pids);
    return pids;
  }

  absl::Status KillAll() override {
    if (!PathExists(dir_)) return absl::OkStatus();
    const std::string kill_file = JoinPath(dir_, "cgroup.kill");
    if (!PathExists(kill_file)) return KillV2ByFreezing(dir_);
    // The kernel kills the whole subtree, including processes forked while
    // the write runs, so one write per round is enough.
    return KillUntilEmpty(
        dir_,
        [&]() -> absl::Status {
          absl::Status status = WriteCgroupFile(kill_file, "1");
          return StatusErrno(status) == ENOENT ? absl::OkStatus() : status;
        },
        [&] { return IsEmpty(dir_); }, kKillTimeout);
  }

  absl::Status Remove() override { return RemoveCgroupTree(dir_); }

  absl::Status Apply(const CgroupLimits& limits) {
    if (limits.memory_bytes != 0) {
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(dir_, "memory.max"), V2MemoryMax(limits.memory_bytes)));
      // v2 limits swap separately; none at all keeps memory+swap at the
      // memory limit. The file is absent without swap support.
      const std::string swap = JoinPath(dir_, "memory.swap.max");
      if (PathExists(swap)) DIYC_RETURN_IF_ERROR(WriteCgroupFile(swap, "0"));
    }
    if (limits.pids != 0) {
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(dir_, "pids.max"), V2PidsMax(limits.pids)));
    }
    if (limits.cpus != 0) {
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(dir_, "cpu.max"), V2CpuMax(limits.cpus)));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CheckExists() const {
    if (PathExists(dir_)) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("cgroup ", dir_, " does not exist"));
  }

  std::string dir_;
};

}  // namespace

absl::Status EnableControllers(const std::string& dir, absl::Span<const absl::string_view> controllers) {
  DIYC_ASSIGN_OR_RETURN(std::string available, ReadCgroupFile(JoinPath(dir, "cgroup.controllers")));
  DIYC_ASSIGN_OR_RETURN(std::string enabled, ReadCgroupFile(JoinPath(dir, "cgroup.subtree_control")));
  const std::vector<std::string> offered = SplitControllers(available);
  const std::vector<std::string> on = SplitControllers(enabled);
  for (absl::string_view controller : controllers) {
    if (!Contains(offered, controller) || Contains(on, controller)) continue;
    absl::Status status = WriteCgroupFile(JoinPath(dir, "cgroup.subtree_control"), absl::StrCat("+", controller));
    if (StatusErrno(status) == EBUSY) {
      // The "no internal processes" rule: only a cgroup without processes
      // of its own (or the root) can hand controllers to children.
      return Annotate(status, absl::StrCat("cgroup ", dir, " holds processes, so it cannot enable controllers"));
    }
    DIYC_RETURN_IF_ERROR(status);
  }
  return absl::OkStatus();
}

absl::Status KillV2ByFreezing(const std::string& dir, absl::Duration timeout) {
  const std::string freeze = JoinPath(dir, "cgroup.freeze");
  // cgroup.freeze arrived in 5.2; before it, rounds of plain SIGKILL.
  const bool can_freeze = PathExists(freeze);
  auto round = [&]() -> absl::Status {
    bool frozen = false;
    if (can_freeze) {
      absl::Status status = WriteCgroupFile(freeze, "1");
      if (StatusErrno(status) == ENOENT) return absl::OkStatus();  // the cgroup is gone
      DIYC_RETURN_IF_ERROR(status);
      frozen = true;
      const absl::Time deadline = absl::Now() + kFreezeWait;
      while (absl::Now() < deadline) {
        absl::StatusOr<std::optional<std::string>> events = ReadCgroupFileIfExists(JoinPath(dir, "cgroup.events"));
        if (!events.ok() || !events->has_value()) break;
        absl::StatusOr<int64_t> done = ParseKeyedValue(**events, "frozen");
        if (!done.ok() || *done == 1) break;
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    // Frozen, nothing forks or exits, so no listed pid can be reused before
    // the kill; v2 delivers SIGKILL to frozen tasks.
    std::vector<pid_t> pids;
    absl::Status result = AppendPidsInTree(dir, &pids);
    if (StatusErrno(result) == ENOENT) result = absl::OkStatus();
    if (result.ok()) result = KillPids(pids);
    if (frozen) {
      absl::Status thaw = WriteCgroupFile(freeze, "0");
      if (result.ok() && StatusErrno(thaw) != ENOENT) result = thaw;
    }
    return result;
  };
  return KillUntilEmpty(dir, round, [&] { return IsEmpty(dir); }, timeout);
}

absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroupV2(absl::string_view root_view, absl::string_view parent,
                                                       absl::string_view name, const CgroupLimits& limits) {
  const std::string root(root_view);
  DIYC_ASSIGN_OR_RETURN(std::string root_controllers, ReadCgroupFile(JoinPath(root, "cgroup.controllers")));
  const std::vector<std::string> offered = SplitControllers(root_controllers);
  const std::pair<absl::string_view, bool> needed[] = {
      {"memory", limits.memory_bytes != 0}, {"pids", limits.pids != 0}, {"cpu", limits.cpus != 0}};
  for (const auto& [controller, limited] : needed) {
    if (limited && !Contains(offered, controller)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "a ", controller, " limit needs the cgroup v2 ", controller, " controller, which ", root,
          "/cgroup.controllers does not offer (a controller bound to a v1 hierarchy is not available in v2)"));
    }
  }
  const std::string dir = JoinPath(JoinPath(root, parent), name);
  if (PathExists(dir)) return absl::AlreadyExistsError(absl::StrCat("cgroup ", dir, " already exists"));

  // The shared parent is created as needed and never removed here: other
  // containers may be using it concurrently.
  std::string at = root;
  DIYC_RETURN_IF_ERROR(EnableControllers(at, kV2Controllers));
  for (absl::string_view component : absl::StrSplit(parent, '/')) {
    at = JoinPath(at, component);
    DIYC_RETURN_IF_ERROR(EnsureCgroupDir(at));
    DIYC_RETURN_IF_ERROR(EnableControllers(at, kV2Controllers));
  }
  DIYC_RETURN_IF_ERROR(MakeCgroupDir(dir));
  absl::Cleanup undo = [&dir] { (void)RemoveCgroupTree(dir); };
  auto cgroup = std::make_unique<CgroupV2>(dir);
  DIYC_RETURN_IF_ERROR(cgroup->Apply(limits));
  std::move(undo).Cancel();
  return cgroup;
}

absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroupV2(absl::string_view root, absl::string_view parent,
                                                     absl::string_view name) {
  std::string dir = JoinPath(JoinPath(root, parent), name);
  if (!PathExists(JoinPath(dir, "cgroup.procs"))) {
    return absl::NotFoundError(absl::StrCat("cgroup ", dir, " not found"));
  }
  return std::make_unique<CgroupV2>(std::move(dir));
}

}  // namespace diyc::netcore::cgroup_internal
