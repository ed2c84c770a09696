// cgroup v1 (and hybrid hosts): one directory per controller hierarchy.
#include <sys/types.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "diyc/netcore/cgroup.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "cgroup_internal.h"

namespace diyc::netcore::cgroup_internal {
namespace {

// How long a kill round waits for freezer.state to reach FROZEN. A task in
// uninterruptible sleep can keep a cgroup FREEZING; the round then kills
// what it sees anyway and the next round catches the rest.
constexpr absl::Duration kFreezeWait = absl::Seconds(1);

class CgroupV1 final : public Cgroup {
 public:
  // dirs: (controller, cgroup directory) for each hierarchy the cgroup is in.
  explicit CgroupV1(std::vector<std::pair<std::string, std::string>> dirs) : dirs_(std::move(dirs)) {}

  CgroupLayout layout() const override { return CgroupLayout::kV1; }
  std::string path() const override { return dirs_.front().second; }

  absl::Status AddProcess(pid_t pid) override {
    if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("add process ", pid, " to cgroup ", path(), ": bad pid"));
    for (const auto& [controller, dir] : dirs_) {
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(dir, "cgroup.procs"), absl::StrCat(pid)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<CgroupStats> Stats() override {
    DIYC_RETURN_IF_ERROR(CheckExists());
    CgroupStats stats;
    if (std::string memory = Dir("memory"); !memory.empty()) {
      DIYC_ASSIGN_OR_RETURN(std::optional<std::string> oom, ReadCgroupFileIfExists(JoinPath(memory, "memory.oom_control")));
      if (oom.has_value()) {
        // Kernels before 4.13 have no oom_kill line: no count to report.
        absl::StatusOr<int64_t> kills = ParseKeyedValue(*oom, "oom_kill");
        if (kills.ok()) stats.oom_kills = *kills;
      }
      DIYC_ASSIGN_OR_RETURN(std::optional<std::string> usage,
                            ReadCgroupFileIfExists(JoinPath(memory, "memory.usage_in_bytes")));
      if (usage.has_value()) {
        DIYC_ASSIGN_OR_RETURN(stats.memory_current, ParseSingleValue(*usage));
      }
    }
    if (std::string pids = Dir("pids"); !pids.empty()) {
      DIYC_ASSIGN_OR_RETURN(std::optional<std::string> current, ReadCgroupFileIfExists(JoinPath(pids, "pids.current")));
      if (current.has_value()) {
        DIYC_ASSIGN_OR_RETURN(stats.pids_current, ParseSingleValue(*current));
      }
    }
    stats.oom_killed = stats.oom_kills > 0;
    return stats;
  }

  absl::StatusOr<std::vector<pid_t>> Pids() override {
    DIYC_RETURN_IF_ERROR(CheckExists());
    return CollectPids();
  }

  absl::Status KillAll() override {
    if (CheckExists().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return KillUntilEmpty(
        path(), [this] { return KillRound(); },
        [this]() -> absl::StatusOr<bool> {
          DIYC_ASSIGN_OR_RETURN(std::vector<pid_t> pids, CollectPids());
          return pids.empty();
        },
        kKillTimeout);
  }

  absl::Status Remove() override {
    absl::Status first;
    for (const auto& [controller, dir] : dirs_) {
      absl::Status status = RemoveCgroupTree(dir);
      if (first.ok()) first = status;
    }
    return first;
  }

  // Writes limits into the hierarchies; each limit's controller is present
  // (CreateCgroupV1 checked).
  absl::Status Apply(const CgroupLimits& limits) {
    if (std::string memory = Dir("memory"); !memory.empty()) {
      if (limits.memory_bytes != 0) {
        const std::string bytes = absl::StrCat(limits.memory_bytes);
        DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(memory, "memory.limit_in_bytes"), bytes));
        // memsw is memory+swap; the same value leaves no room for swap. It
        // exists only with swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1).
        // Written after limit_in_bytes, as the kernel requires memsw >= limit.
        const std::string memsw = JoinPath(memory, "memory.memsw.limit_in_bytes");
        if (PathExists(memsw)) DIYC_RETURN_IF_ERROR(WriteCgroupFile(memsw, bytes));
      }
      // A new memcg inherits oom_kill_disable from its parent; make sure the
      // OOM killer acts, or an over-limit container would hang instead.
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(memory, "memory.oom_control"), "0"));
    }
    if (limits.pids != 0) {
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(Dir("pids"), "pids.max"), absl::StrCat(limits.pids)));
    }
    if (limits.cpus != 0) {
      const std::string cpu = Dir("cpu");
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(cpu, "cpu.cfs_period_us"), absl::StrCat(kCgroupCpuPeriodUs)));
      DIYC_RETURN_IF_ERROR(WriteCgroupFile(JoinPath(cpu, "cpu.cfs_quota_us"), absl::StrCat(CpuQuotaUs(limits.cpus))));
    }
    return absl::OkStatus();
  }

 private:
  std::string Dir(absl::string_view controller) const {
    for (const auto& [name, dir] : dirs_) {
      if (name == controller) return dir;
    }
    return "";
  }

  absl::Status CheckExists() const {
    for (const auto& [controller, dir] : dirs_) {
      if (PathExists(dir)) return absl::OkStatus();
    }
    return absl::NotFoundError(absl::StrCat("cgroup ", path(), " does not exist"));
  }

  // The union over all hierarchies: a process may have been moved into only
  // some of them (AddProcess failed half-way, or someone else moved it).
  absl::StatusOr<std::vector<pid_t>> CollectPids() const {
    std::vector<pid_t> pids;
    for (const auto& [controller, dir] : dirs_) {
      absl::Status status = AppendPidsInTree(dir, &pids);
      if (!status.ok() && StatusErrno(status) != ENOENT) return status;
    }
    SortUnique(&pids);
    return pids;
  }

  // Freeze, so nothing forks or exits between listing and killing (a pid
  // read from a frozen cgroup cannot be reused); SIGKILL everything; thaw,
  // because v1 frozen tasks only act on the signal once thawed.
  absl::Status KillRound() {
    const std::string freezer = Dir("freezer");
    const std::string state = freezer.empty() ? "" : JoinPath(freezer, "freezer.state");
    bool frozen = false;
    if (!state.empty()) {
      absl::Status status = WriteCgroupFile(state, "FROZEN");
      if (!status.ok() && StatusErrno(status) != ENOENT) return status;
      frozen = status.ok();
      const absl::Time deadline = absl::Now() + kFreezeWait;
      while (frozen && absl::Now() < deadline) {
        absl::StatusOr<std::optional<std::string>> now = ReadCgroupFileIfExists(state);
        if (!now.ok() || !now->has_value() || absl::StripAsciiWhitespace(**now) == "FROZEN") break;
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    absl::StatusOr<std::vector<pid_t>> pids = CollectPids();
    absl::Status result = pids.ok() ? KillPids(*pids) : pids.status();
    if (frozen) {
      absl::Status thaw = WriteCgroupFile(state, "THAWED");
      if (result.ok() && !thaw.ok() && StatusErrno(thaw) != ENOENT) result = thaw;
    }
    return result;
  }

  std::vector<std::pair<std::string, std::string>> dirs_;
};

std::vector<std::pair<std::string, std::string>> CgroupDirs(const CgroupMounts& mounts, absl::string_view parent,
                                                            absl::string_view name) {
  std::vector<std::pair<std::string, std::string>> dirs;
  for (const auto& [controller, mount_point] : mounts.v1) {
    dirs.emplace_back(controller, JoinPath(JoinPath(mount_point, parent), name));
  }
  return dirs;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cgroup>> CreateCgroupV1(const CgroupMounts& mounts, absl::string_view root,
                                                       absl::string_view parent, absl::string_view name,
                                                       const CgroupLimits& limits) {
  const std::pair<absl::string_view, bool> needed[] = {
      {"memory", limits.memory_bytes != 0}, {"pids", limits.pids != 0}, {"cpu", limits.cpus != 0}};
  for (const auto& [controller, limited] : needed) {
    if (limited && mounts.V1MountPoint(controller).empty()) {
      return absl::FailedPreconditionError(absl::StrCat("a ", controller, " limit needs the cgroup v1 ", controller,
                                                        " controller, which is not mounted below ", root));
    }
  }
  std::vector<std::pair<std::string, std::string>> dirs = CgroupDirs(mounts, parent, name);
  for (const auto& [controller, dir] : dirs) {
    if (PathExists(dir)) return absl::AlreadyExistsError(absl::StrCat("cgroup ", dir, " already exists"));
  }

  std::vector<std::string> created;
  absl::Cleanup undo = [&created] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) (void)RemoveCgroupTree(*it);
  };
  for (const auto& [controller, mount_point] : mounts.v1) {
    // The shared parent is created as needed and never removed here: other
    // containers may be using it concurrently.
    std::string at = mount_point;
    for (absl::string_view component : absl::StrSplit(parent, '/')) {
      at = JoinPath(at, component);
      DIYC_RETURN_IF_ERROR(EnsureCgroupDir(at));
    }
    const std::string dir = JoinPath(at, name);
    DIYC_RETURN_IF_ERROR(MakeCgroupDir(dir));
    created.push_back(dir);
  }
  auto cgroup = std::make_unique<CgroupV1>(std::move(dirs));
  DIYC_RETURN_IF_ERROR(cgroup->Apply(limits));
  std::move(undo).Cancel();
  return cgroup;
}

absl::StatusOr<std::unique_ptr<Cgroup>> OpenCgroupV1(const CgroupMounts& mounts, absl::string_view root,
                                                     absl::string_view parent, absl::string_view name) {
  std::vector<std::pair<std::string, std::string>> present;
  for (auto& [controller, dir] : CgroupDirs(mounts, parent, name)) {
    if (PathExists(dir)) present.emplace_back(std::move(controller), std::move(dir));
  }
  if (present.empty()) {
    return absl::NotFoundError(
        absl::StrCat("cgroup ", JoinPath(parent, name), " not found in any cgroup v1 hierarchy below ", root));
  }
  return std::make_unique<CgroupV1>(std::move(present));
}

}  // namespace diyc::netcore::cgroup_internal
