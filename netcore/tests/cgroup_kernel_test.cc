// cgroups on the real kernel. Needs root.
//
// v1 tests run when the host's memory/pids/cpu controllers are v1 (including
// hybrid hosts). v2 tests always run, in a forked child that mounts a private
// cgroup2 filesystem in its own mount namespace, so they work on v1, hybrid
// and v2 hosts alike; limit checks whose controller that cgroup2 does not
// offer (it is bound to a v1 hierarchy) are skipped with the reason.
//
// Processes are forked children put into the cgroup before they start their
// work. Every test uses a parent "diyc-test-<pid>-<n>" and removes it, its
// cgroups and its processes; TearDown checks that nothing is left.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "diyc/netcore/cgroup.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/unique_fd.h"
#include "gtest/gtest.h"
#include "netcore/src/cgroup_internal.h"

namespace diyc::netcore {
namespace {

using cgroup_internal::CgroupMounts;
using cgroup_internal::JoinPath;
using cgroup_internal::PathExists;

constexpr int64_t kMiB = int64_t{1} << 20;

std::string UniqueParent() {
  static std::atomic<int> counter{0};
  return absl::StrCat("diyc-test-", getpid(), "-", counter++);
}

std::string ReadTrimmed(const std::string& path) {
  absl::StatusOr<std::string> text = cgroup_internal::ReadCgroupFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

int64_t ReadKeyed(const std::string& path, absl::string_view key) {
  absl::StatusOr<int64_t> value = cgroup_internal::ParseKeyedValue(ReadTrimmed(path), key);
  EXPECT_TRUE(value.ok()) << path << ": " << value.status();
  return value.ok() ? *value : -1;
}

std::vector<std::string> Controllers(const std::string& dir) {
  return cgroup_internal::SplitControllers(ReadTrimmed(JoinPath(dir, "cgroup.controllers")));
}

bool Has(const std::vector<std::string>& list, absl::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

bool Contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// Reaps every exited child, including orphans handed to us as subreaper.
void ReapAll() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

// A forked process that waits for Go() before running its body, so the test
// can put it into a cgroup first. The body reports through report_fd and its
// return value is the exit code. Killed and reaped if the test forgets.
class Child {
 public:
  static Child Spawn(const std::function<int(int report_fd)>& body) {
    int go[2], report[2];
    Child child;
    if (pipe2(go, O_CLOEXEC) != 0) return child;
    if (pipe2(report, O_CLOEXEC) != 0) {
      close(go[0]);
      close(go[1]);
      return child;
    }
    child.pid_ = fork();
    if (child.pid_ == 0) {
      // Keep only the two pipe ends (and stdio): a process that outlives a
      // failed test must not hold other tests' pipes open.
      for (int fd = 3; fd < 1024; ++fd) {
        if (fd != go[0] && fd != report[1]) close(fd);
      }
      char byte;
      if (read(go[0], &byte, 1) != 1) _exit(120);  // the test gave up
      close(go[0]);
      _exit(body(report[1]));
    }
    close(go[0]);
    close(report[1]);
    child.go_.Reset(go[1]);
    child.report_.Reset(report[0]);
    return child;
  }

  Child() = default;
  Child(Child&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), go_(std::move(other.go_)), report_(std::move(other.report_)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  void Go() {
    char byte = 'g';
    EXPECT_EQ(write(go_.get(), &byte, 1), 1);
    go_.Reset();
  }

  // One line from the child, without the newline; "" on timeout or EOF.
  std::string ReadLine(absl::Duration timeout = absl::Seconds(20)) {
    std::string line;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      struct pollfd pfd = {report_.get(), POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      char c;
      if (read(report_.get(), &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    ADD_FAILURE() << "no line from child " << pid_ << " (got '" << line << "')";
    return "";
  }

  // The wait status.
  int Wait() {
    int status = 0;
    EXPECT_EQ(waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    return status;
  }

  // Still running (not exited, or exited and not reaped).
  bool Running() {
    int status = 0;
    return waitpid(pid_, &status, WNOHANG) == 0;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd go_;
  UniqueFd report_;
};

bool KilledBySigkill(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

// ---- Bodies run by children (only async-signal-safe work after fork) ----

// Forks until the kernel refuses, reports "<forks> <errno>", waits to be killed.
int ForkUntilRefused(int report) {
  int made = 0, error = 0;
  for (int i = 0; i < 64; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    if (pid < 0) {
      error = errno;
      break;
    }
    ++made;
  }
  dprintf(report, "%d %d\n", made, error);
  for (;;) pause();
}

// Touches bytes of fresh anonymous memory, reports "touched", then waits to
// be killed when asked to (wait_after), else exits 0.
int TouchMemory(int report, size_t bytes, bool wait_after) {
  char* memory = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (memory == MAP_FAILED) return 3;
  for (size_t i = 0; i < bytes; i += 4096) memory[i] = 1;
  dprintf(report, "touched\n");
  if (wait_after) {
    for (;;) pause();
  }
  return 0;
}

// Spins for one second of wall time and reports the CPU time it got, in us.
int SpinOneSecond(int report) {
  struct timespec start, now, cpu;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 1000000000L);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  dprintf(report, "%ld\n", cpu.tv_sec * 1000000L + cpu.tv_nsec / 1000);
  return 0;
}

// Reports "up" and waits to be killed.
int ReportUpAndWait(int report) {
  dprintf(report, "up\n");
  for (;;) pause();
}

// Ignores SIGTERM, starts three children that do the same, reports "ready".
int IgnoreTermWithChildren(int report) {
  signal(SIGTERM, SIG_IGN);
  for (int i = 0; i < 3; ++i) {
    if (fork() == 0) {
      for (;;) pause();
    }
  }
  dprintf(report, "ready\n");
  for (;;) pause();
}

// ---- Checks shared by v1 and v2 ----

void ExpectPidsLimitStopsForks(Cgroup& cgroup) {
  Child child = Child::Spawn(ForkUntilRefused);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
  child.Go();
  // The child itself is one of the 5.
  EXPECT_EQ(child.ReadLine(), absl::StrCat(4, " ", EAGAIN));
  absl::StatusOr<CgroupStats> stats = cgroup.Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pids_current, 5);
  absl::StatusOr<std::vector<pid_t>> pids = cgroup.Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_EQ(pids->size(), 5u);
  EXPECT_TRUE(Contains(*pids, child.pid()));

  absl::Status killed = cgroup.KillAll();
  EXPECT_TRUE(killed.ok()) << killed;
  EXPECT_TRUE(KilledBySigkill(child.Wait()));
  EXPECT_TRUE(cgroup.Pids().ok() && cgroup.Pids()->empty());
  // The pids controller counts exited processes until they are reaped; the
  // orphaned grandchildren come to this process, the subreaper.
  int64_t current = -1;
  for (int i = 0; i < 100 && current != 0; ++i) {
    ReapAll();
    absl::StatusOr<CgroupStats> now = cgroup.Stats();
    ASSERT_TRUE(now.ok()) << now.status();
    current = now->pids_current;
    if (current != 0) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(current, 0);
}

void ExpectOomKill(Cgroup& cgroup) {
  absl::StatusOr<CgroupStats> before = cgroup.Stats();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_FALSE(before->oom_killed);

  // Within the limit: charged, not killed.
  {
    Child child = Child::Spawn([](int report) { return TouchMemory(report, 8 * kMiB, /*wait_after=*/true); });
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
    child.Go();
    EXPECT_EQ(child.ReadLine(), "touched");
    absl::StatusOr<CgroupStats> stats = cgroup.Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_GE(stats->memory_current, 8 * kMiB);
    EXPECT_FALSE(stats->oom_killed);
    EXPECT_TRUE(cgroup.KillAll().ok());
    EXPECT_TRUE(KilledBySigkill(child.Wait()));
  }
  // Four times the limit: the OOM killer ends it.
  Child child = Child::Spawn([](int report) { return TouchMemory(report, 64 * kMiB, /*wait_after=*/false); });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
  child.Go();
  const int status = child.Wait();
  EXPECT_TRUE(KilledBySigkill(status)) << "wait status " << status;
  absl::StatusOr<CgroupStats> after = cgroup.Stats();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->oom_killed);
  EXPECT_GE(after->oom_kills, 1);
}

void ExpectCpuThrottled(Cgroup& cgroup, const std::string& cpu_stat) {
  Child child = Child::Spawn(SpinOneSecond);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
  child.Go();
  int64_t cpu_us = 0;
  ASSERT_TRUE(absl::SimpleAtoi(child.ReadLine(), &cpu_us));
  const int status = child.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Half a CPU for a second of spinning: about 500 ms, plus one period of
  // slack. Only an upper bound, as a busy machine may give even less.
  EXPECT_LE(cpu_us, 700000);
  EXPECT_GT(ReadKeyed(cpu_stat, "nr_throttled"), 0);
}

void ExpectKillAllKillsTree(Cgroup& cgroup) {
  Child child = Child::Spawn(IgnoreTermWithChildren);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
  child.Go();
  ASSERT_EQ(child.ReadLine(), "ready");
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_TRUE(child.Running()) << "SIGTERM should have been ignored";
  absl::StatusOr<std::vector<pid_t>> pids = cgroup.Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_EQ(pids->size(), 4u);

  absl::Status killed = cgroup.KillAll();
  EXPECT_TRUE(killed.ok()) << killed;
  EXPECT_TRUE(KilledBySigkill(child.Wait()));
  pids = cgroup.Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_TRUE(pids->empty()) << absl::StrJoin(*pids, " ");
}

// ---- v1 ----

class CgroupV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    absl::StatusOr<CgroupLayout> layout = DetectCgroupLayout();
    if (!layout.ok() || *layout != CgroupLayout::kV1) {
      GTEST_SKIP() << "the host's cgroups are not v1 ("
                   << (layout.ok() ? "v2" : std::string(layout.status().message())) << ")";
    }
    absl::StatusOr<std::string> mountinfo = cgroup_internal::ReadCgroupFile("/proc/self/mountinfo");
    ASSERT_TRUE(mountinfo.ok());
    absl::StatusOr<CgroupMounts> mounts = cgroup_internal::FindCgroupMounts(*mountinfo, "/sys/fs/cgroup");
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    mounts_ = *mounts;
    options_.parent = UniqueParent();
    options_.layout = CgroupLayout::kV1;
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    active_ = true;
  }

  void TearDown() override {
    if (!active_) return;
    for (const std::string& name : names_) {
      absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = OpenCgroup(name, options_);
      if (!cgroup.ok()) continue;
      EXPECT_TRUE((*cgroup)->KillAll().ok());
      EXPECT_TRUE((*cgroup)->Remove().ok());
    }
    for (const auto& [controller, mount_point] : mounts_.v1) {
      const std::string parent = JoinPath(mount_point, options_.parent);
      if (PathExists(parent)) (void)cgroup_internal::WriteCgroupFile(JoinPath(parent, "cpu.cfs_quota_us"), "-1");
      EXPECT_TRUE(rmdir(parent.c_str()) == 0 || errno == ENOENT) << parent << ": " << strerror(errno);
      EXPECT_FALSE(PathExists(parent)) << "left behind: " << parent;
    }
    ReapAll();
  }

  std::string NewName() {
    names_.push_back(absl::StrCat("c", names_.size()));
    return names_.back();
  }

  std::string Dir(absl::string_view controller, absl::string_view name) const {
    return JoinPath(JoinPath(mounts_.V1MountPoint(controller), options_.parent), name);
  }

  void ExpectGoneEverywhere(absl::string_view name) {
    for (const auto& [controller, mount_point] : mounts_.v1) {
      EXPECT_FALSE(PathExists(Dir(controller, name))) << "left behind: " << Dir(controller, name);
    }
  }

  std::unique_ptr<Cgroup> MustCreate(absl::string_view name, const CgroupLimits& limits) {
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup(name, limits, options_);
    EXPECT_TRUE(cgroup.ok()) << cgroup.status();
    return cgroup.ok() ? *std::move(cgroup) : nullptr;
  }

  bool active_ = false;
  CgroupMounts mounts_;
  CgroupOptions options_;
  std::vector<std::string> names_;
};

TEST_F(CgroupV1Test, CreateAppliesLimitsInEveryHierarchy) {
  const std::string name = NewName();
  std::unique_ptr<Cgroup> cgroup = MustCreate(name, {.memory_bytes = 16 * kMiB, .pids = 5, .cpus = 0.5});
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->layout(), CgroupLayout::kV1);
  EXPECT_EQ(cgroup->path(), Dir("memory", name));
  for (absl::string_view controller : {"memory", "pids", "cpu", "freezer"}) {
    ASSERT_FALSE(mounts_.V1MountPoint(controller).empty()) << controller << " is not mounted here";
    EXPECT_TRUE(PathExists(Dir(controller, name))) << controller;
  }
  const std::string memory = Dir("memory", name);
  EXPECT_EQ(ReadTrimmed(JoinPath(memory, "memory.limit_in_bytes")), "16777216");
  if (PathExists(JoinPath(memory, "memory.memsw.limit_in_bytes"))) {
    EXPECT_EQ(ReadTrimmed(JoinPath(memory, "memory.memsw.limit_in_bytes")), "16777216");
  }
  EXPECT_EQ(ReadKeyed(JoinPath(memory, "memory.oom_control"), "oom_kill_disable"), 0);
  EXPECT_EQ(ReadTrimmed(JoinPath(Dir("pids", name), "pids.max")), "5");
  EXPECT_EQ(ReadTrimmed(JoinPath(Dir("cpu", name), "cpu.cfs_period_us")), "100000");
  EXPECT_EQ(ReadTrimmed(JoinPath(Dir("cpu", name), "cpu.cfs_quota_us")), "50000");

  EXPECT_EQ(CreateCgroup(name, {}, options_).status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<std::unique_ptr<Cgroup>> opened = OpenCgroup(name, options_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->path(), cgroup->path());
  absl::StatusOr<CgroupStats> stats = (*opened)->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(stats->oom_killed);
  EXPECT_EQ(stats->pids_current, 0);
  EXPECT_TRUE(cgroup->Pids().ok() && cgroup->Pids()->empty());

  ASSERT_TRUE(cgroup->Remove().ok());
  ExpectGoneEverywhere(name);
  EXPECT_TRUE(cgroup->Remove().ok()) << "Remove is idempotent";
  EXPECT_TRUE(cgroup->KillAll().ok()) << "nothing to kill in a removed cgroup";
  EXPECT_EQ(cgroup->Pids().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cgroup->Stats().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(OpenCgroup(name, options_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupV1Test, BadLimitsCreateNothing) {
  const std::string name = NewName();
  EXPECT_EQ(CreateCgroup(name, {.memory_bytes = kMiB}, options_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCgroup(name, {.cpus = 0.001}, options_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCgroup("bad/name", {}, options_).status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& [controller, mount_point] : mounts_.v1) {
    EXPECT_FALSE(PathExists(JoinPath(mount_point, options_.parent))) << "created for a rejected request";
  }
}

TEST_F(CgroupV1Test, FailureHalfWayRemovesWhatWasCreated) {
  // v1 CFS refuses a child quota above its parent's: the last write of the
  // create fails after every directory and the other limits are in place.
  const std::string cpu_parent = JoinPath(mounts_.V1MountPoint("cpu"), options_.parent);
  ASSERT_TRUE(cgroup_internal::EnsureCgroupDir(cpu_parent).ok());
  ASSERT_TRUE(cgroup_internal::WriteCgroupFile(JoinPath(cpu_parent, "cpu.cfs_quota_us"), "10000").ok());

  const std::string name = NewName();
  absl::StatusOr<std::unique_ptr<Cgroup>> cgroup =
      CreateCgroup(name, {.memory_bytes = 16 * kMiB, .pids = 5, .cpus = 0.5}, options_);
  EXPECT_EQ(cgroup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cgroup.status().message(),
            absl::StrCat("write 50000 to ", Dir("cpu", name), "/cpu.cfs_quota_us: Invalid argument"));
  EXPECT_EQ(StatusErrno(cgroup.status()), EINVAL);
  ExpectGoneEverywhere(name);
}

TEST_F(CgroupV1Test, PidsLimitMakesForkFailWithEagain) {
  std::unique_ptr<Cgroup> cgroup = MustCreate(NewName(), {.pids = 5});
  ASSERT_NE(cgroup, nullptr);
  ExpectPidsLimitStopsForks(*cgroup);
}

TEST_F(CgroupV1Test, MemoryLimitOomKillsAndStatsSaySo) {
  std::unique_ptr<Cgroup> cgroup = MustCreate(NewName(), {.memory_bytes = 16 * kMiB});
  ASSERT_NE(cgroup, nullptr);
  ExpectOomKill(*cgroup);
}

TEST_F(CgroupV1Test, CpuQuotaThrottles) {
  const std::string name = NewName();
  std::unique_ptr<Cgroup> cgroup = MustCreate(name, {.cpus = 0.5});
  ASSERT_NE(cgroup, nullptr);
  ExpectCpuThrottled(*cgroup, JoinPath(Dir("cpu", name), "cpu.stat"));
}

TEST_F(CgroupV1Test, KillAllKillsProcessesIgnoringSigterm) {
  const std::string name = NewName();
  std::unique_ptr<Cgroup> cgroup = MustCreate(name, {.pids = 16});
  ASSERT_NE(cgroup, nullptr);
  ExpectKillAllKillsTree(*cgroup);
  EXPECT_EQ(ReadTrimmed(JoinPath(Dir("freezer", name), "freezer.state")), "THAWED");
  ASSERT_TRUE(cgroup->Remove().ok());
  ExpectGoneEverywhere(name);
}

TEST_F(CgroupV1Test, KillAllWithoutFreezerStillKills) {
  // A host without the freezer hierarchy: plain SIGKILL rounds.
  mounts_.v1.erase(std::remove_if(mounts_.v1.begin(), mounts_.v1.end(),
                                  [](const auto& entry) { return entry.first == "freezer"; }),
                   mounts_.v1.end());
  absl::StatusOr<std::unique_ptr<Cgroup>> cgroup =
      cgroup_internal::CreateCgroupV1(mounts_, "/sys/fs/cgroup", options_.parent, NewName(), {});
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  ExpectKillAllKillsTree(**cgroup);
  EXPECT_TRUE((*cgroup)->Remove().ok());
}

TEST_F(CgroupV1Test, RemoveWaitsOutBusyThenNestedCgroupsGoToo) {
  const std::string name = NewName();
  std::unique_ptr<Cgroup> cgroup = MustCreate(name, {});
  ASSERT_NE(cgroup, nullptr);
  Child child = Child::Spawn(ReportUpAndWait);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cgroup->AddProcess(child.pid()).ok());
  child.Go();
  ASSERT_EQ(child.ReadLine(), "up");
  // A container with a writable cgroupfs may make cgroups of its own.
  const std::string nested = JoinPath(Dir("memory", name), "inner");
  ASSERT_TRUE(cgroup_internal::MakeCgroupDir(nested).ok());
  ASSERT_TRUE(cgroup_internal::WriteCgroupFile(JoinPath(nested, "cgroup.procs"), absl::StrCat(child.pid())).ok());
  absl::StatusOr<std::vector<pid_t>> pids = cgroup->Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_EQ(*pids, std::vector<pid_t>{child.pid()});

  absl::Status busy = cgroup->Remove();
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition) << busy;
  EXPECT_TRUE(absl::StrContains(busy.message(), "still has processes")) << busy;
  // A half-removed cgroup still opens, to be finished later.
  absl::StatusOr<std::unique_ptr<Cgroup>> reopened = OpenCgroup(name, options_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_TRUE((*reopened)->KillAll().ok());
  EXPECT_TRUE(KilledBySigkill(child.Wait()));
  EXPECT_TRUE((*reopened)->Remove().ok());
  EXPECT_FALSE(PathExists(nested));
  ExpectGoneEverywhere(name);
}

TEST_F(CgroupV1Test, OpenFindsHalfCreatedCgroup) {
  // What a crash between two mkdirs leaves: the cgroup in memory only.
  const std::string name = NewName();
  ASSERT_TRUE(cgroup_internal::EnsureCgroupDir(JoinPath(mounts_.V1MountPoint("memory"), options_.parent)).ok());
  ASSERT_TRUE(cgroup_internal::MakeCgroupDir(Dir("memory", name)).ok());
  EXPECT_EQ(CreateCgroup(name, {}, options_).status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = OpenCgroup(name, options_);
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  EXPECT_EQ((*cgroup)->path(), Dir("memory", name));
  EXPECT_TRUE((*cgroup)->Remove().ok());
  ExpectGoneEverywhere(name);
  EXPECT_EQ(OpenCgroup(name, options_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupV1Test, CreateSurvivesTheSharedParentBeingRemovedMeanwhile) {
  // Two owners (two diycd instances) create and remove cgroups under one
  // parent, each removing the parent when its last cgroup goes: a create
  // must not fail because the other removed the parent between its making
  // sure the parent exists and its making the new cgroup.
  constexpr int kRounds = 300;
  std::vector<std::string> names[2];
  for (auto& list : names) {
    for (int i = 0; i < kRounds; ++i) list.push_back(NewName());
  }
  std::atomic<int> failures{0};
  std::string first_failure[2];
  auto owner = [&](int who) {
    for (const std::string& name : names[who]) {
      absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup(name, {}, options_);
      if (!cgroup.ok()) {
        if (failures++ == 0) first_failure[who] = cgroup.status().ToString();
        continue;
      }
      EXPECT_TRUE((*cgroup)->Remove().ok());
      EXPECT_TRUE(RemoveCgroupParentIfUnused(options_).ok());
    }
  };
  std::thread other(owner, 1);
  owner(0);
  other.join();
  EXPECT_EQ(failures.load(), 0) << first_failure[0] << first_failure[1];
  for (const auto& list : names) {
    for (const std::string& name : list) ExpectGoneEverywhere(name);
  }
}

TEST_F(CgroupV1Test, AddProcessErrors) {
  std::unique_ptr<Cgroup> cgroup = MustCreate(NewName(), {});
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->AddProcess(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cgroup->AddProcess(-3).code(), absl::StatusCode::kInvalidArgument);
  // A pid nobody has: an exited, reaped child's.
  Child child = Child::Spawn([](int) { return 0; });
  ASSERT_GT(child.pid(), 0);
  const pid_t gone = child.pid();
  child.Go();
  child.Wait();
  absl::Status status = cgroup->AddProcess(gone);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "cgroup.procs: No such process")) << status;
}

// ---- v2, on a private cgroup2 mount ----

// Runs in the child that owns the private mount: the options point at it and
// skip, when set, is why the test was skipped.
using V2Body = std::function<void(const CgroupOptions& options, std::string* skip)>;

class CgroupV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    char dir[] = "/tmp/diyc-cgroup2-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr) << strerror(errno);
    mount_dir_ = dir;
    parent_ = UniqueParent();
  }

  void TearDown() override {
    if (mount_dir_.empty()) return;
    EXPECT_EQ(rmdir(mount_dir_.c_str()), 0) << mount_dir_ << ": " << strerror(errno);
    // The cgroup2 hierarchy is shared with the host's own cgroup2 mounts
    // (at /sys/fs/cgroup/unified on hybrid hosts): nothing may be left there.
    absl::StatusOr<std::string> mountinfo = cgroup_internal::ReadCgroupFile("/proc/self/mountinfo");
    ASSERT_TRUE(mountinfo.ok());
    for (absl::string_view line : absl::StrSplit(*mountinfo, '\n', absl::SkipEmpty())) {
      std::vector<std::string> fields = absl::StrSplit(line, ' ');
      auto dash = std::find(fields.begin(), fields.end(), "-");
      if (dash == fields.end() || dash + 1 == fields.end() || dash[1] != "cgroup2") continue;
      EXPECT_FALSE(PathExists(JoinPath(fields[4], parent_))) << "left behind in " << fields[4];
      EXPECT_NE(fields[4], mount_dir_) << "private mount leaked";
    }
  }

  // Forks a child that mounts cgroup2 at mount_dir_ in a new mount namespace
  // (its mounts vanish with it) and runs body there. The child's gtest
  // failures print in its output and fail this test through its exit code.
  void RunInPrivateCgroup2(const V2Body& body) {
    int report[2];
    ASSERT_EQ(pipe2(report, O_CLOEXEC), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(report[0]);
      if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          mount("cgroup2", mount_dir_.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        dprintf(report[1], "mount cgroup2 on %s: %s", mount_dir_.c_str(), strerror(errno));
        _exit(2);
      }
      prctl(PR_SET_CHILD_SUBREAPER, 1);
      const CgroupOptions options{.parent = parent_, .layout = CgroupLayout::kV2, .root = mount_dir_};
      std::string skip;
      body(options, &skip);
      // Whatever a failed check left: kill it all and remove the parent.
      const std::string parent = JoinPath(mount_dir_, parent_);
      if (PathExists(parent)) {
        EXPECT_TRUE(cgroup_internal::KillV2ByFreezing(parent).ok());
        EXPECT_TRUE(cgroup_internal::RemoveCgroupTree(parent).ok());
      }
      ReapAll();
      umount2(mount_dir_.c_str(), MNT_DETACH);
      if (!skip.empty()) dprintf(report[1], "%s", skip.c_str());
      _exit(::testing::Test::HasFailure() ? 1 : skip.empty() ? 0 : 77);
    }
    close(report[1]);
    std::string message;
    char buffer[256];
    ssize_t n;
    while ((n = read(report[0], buffer, sizeof(buffer))) > 0) message.append(buffer, n);
    close(report[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    switch (WEXITSTATUS(status)) {
      case 0:
        break;
      case 77:
        GTEST_SKIP() << message;
      case 1:
        ADD_FAILURE() << "checks failed in the cgroup2 child (see its output above)";
        break;
      default:
        ADD_FAILURE() << "cgroup2 child exited " << WEXITSTATUS(status) << ": " << message;
    }
  }

  std::string mount_dir_;
  std::string parent_;
};

// Why a controller's limit cannot be checked here.
std::string NotOffered(absl::string_view controller, const std::string& root) {
  return absl::StrCat("the ", controller, " controller is not in ", root,
                      "/cgroup.controllers (bound to a cgroup v1 hierarchy on this host), so its limit is not "
                      "tested on cgroup2 here");
}

TEST_F(CgroupV2Test, CreateAddKillRemove) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string*) {
    // Detection sees the private mount.
    absl::StatusOr<std::string> mountinfo = cgroup_internal::ReadCgroupFile("/proc/self/mountinfo");
    ASSERT_TRUE(mountinfo.ok());
    absl::StatusOr<CgroupLayout> detected = DetectCgroupLayoutFromMountinfo(*mountinfo, options.root);
    ASSERT_TRUE(detected.ok()) << detected.status();
    EXPECT_EQ(*detected, CgroupLayout::kV2);

    // Limits for whatever controllers this cgroup2 offers.
    const std::vector<std::string> offered = Controllers(options.root);
    CgroupLimits limits;
    if (Has(offered, "memory")) limits.memory_bytes = 32 * kMiB;
    if (Has(offered, "pids")) limits.pids = 64;
    if (Has(offered, "cpu")) limits.cpus = 0.5;
    CgroupOptions detect = options;
    detect.layout.reset();
    absl::StatusOr<std::unique_ptr<Cgroup>> created = CreateCgroup("web", limits, detect);
    ASSERT_TRUE(created.ok()) << created.status();
    Cgroup& cgroup = **created;
    const std::string parent = JoinPath(options.root, options.parent);
    const std::string dir = JoinPath(parent, "web");
    EXPECT_EQ(cgroup.layout(), CgroupLayout::kV2);
    EXPECT_EQ(cgroup.path(), dir);
    const std::vector<std::string> enabled =
        cgroup_internal::SplitControllers(ReadTrimmed(JoinPath(parent, "cgroup.subtree_control")));
    for (absl::string_view controller : {"memory", "pids", "cpu"}) {
      EXPECT_EQ(Has(enabled, controller), Has(offered, controller)) << controller;
    }
    if (limits.memory_bytes != 0) {
      EXPECT_EQ(ReadTrimmed(JoinPath(dir, "memory.max")), "33554432");
      if (PathExists(JoinPath(dir, "memory.swap.max"))) {
        EXPECT_EQ(ReadTrimmed(JoinPath(dir, "memory.swap.max")), "0");
      }
    }
    if (limits.pids != 0) {
      EXPECT_EQ(ReadTrimmed(JoinPath(dir, "pids.max")), "64");
    }
    if (limits.cpus != 0) {
      EXPECT_EQ(ReadTrimmed(JoinPath(dir, "cpu.max")), "50000 100000");
    }
    EXPECT_EQ(CreateCgroup("web", {}, options).status().code(), absl::StatusCode::kAlreadyExists);

    Child child = Child::Spawn(IgnoreTermWithChildren);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(cgroup.AddProcess(child.pid()).ok());
    child.Go();
    ASSERT_EQ(child.ReadLine(), "ready");
    absl::StatusOr<std::vector<pid_t>> procs =
        cgroup_internal::ParsePids(ReadTrimmed(JoinPath(dir, "cgroup.procs")));
    ASSERT_TRUE(procs.ok());
    EXPECT_EQ(procs->size(), 4u);
    EXPECT_TRUE(Contains(*procs, child.pid()));
    absl::StatusOr<CgroupStats> stats = cgroup.Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_FALSE(stats->oom_killed);
    if (limits.pids != 0) {
      EXPECT_EQ(stats->pids_current, 4);
    }
    EXPECT_EQ(ReadKeyed(JoinPath(dir, "cgroup.events"), "populated"), 1);

    absl::StatusOr<std::unique_ptr<Cgroup>> opened = OpenCgroup("web", options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ((*opened)->path(), dir);
    // cgroup.kill (5.14+) is what KillAll uses here.
    EXPECT_TRUE(PathExists(JoinPath(dir, "cgroup.kill")));
    ASSERT_TRUE((*opened)->KillAll().ok());
    EXPECT_TRUE(KilledBySigkill(child.Wait()));
    EXPECT_EQ(ReadKeyed(JoinPath(dir, "cgroup.events"), "populated"), 0);
    EXPECT_TRUE(cgroup.Pids().ok() && cgroup.Pids()->empty());

    ASSERT_TRUE(cgroup.Remove().ok());
    EXPECT_FALSE(PathExists(dir));
    EXPECT_TRUE(PathExists(parent)) << "the shared parent stays";
    EXPECT_TRUE(cgroup.Remove().ok());
    EXPECT_TRUE(cgroup.KillAll().ok());
    EXPECT_EQ(cgroup.Pids().status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(OpenCgroup("web", options).status().code(), absl::StatusCode::kNotFound);
  });
}

TEST_F(CgroupV2Test, KillByFreezingWhereCgroupKillIsMissing) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string*) {
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup("frz", {}, options);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    Child child = Child::Spawn(IgnoreTermWithChildren);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE((*cgroup)->AddProcess(child.pid()).ok());
    child.Go();
    ASSERT_EQ(child.ReadLine(), "ready");
    // The path KillAll takes on kernels before 5.14.
    absl::Status killed = cgroup_internal::KillV2ByFreezing((*cgroup)->path());
    EXPECT_TRUE(killed.ok()) << killed;
    EXPECT_TRUE(KilledBySigkill(child.Wait()));
    EXPECT_TRUE((*cgroup)->Pids().ok() && (*cgroup)->Pids()->empty());
    EXPECT_EQ(ReadTrimmed(JoinPath((*cgroup)->path(), "cgroup.freeze")), "0") << "left frozen";
    EXPECT_TRUE((*cgroup)->Remove().ok());
  });
}

TEST_F(CgroupV2Test, NestedAndBusyCgroups) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string*) {
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup("nest", {}, options);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    Child child = Child::Spawn(ReportUpAndWait);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE((*cgroup)->AddProcess(child.pid()).ok());
    child.Go();
    ASSERT_EQ(child.ReadLine(), "up");
    const std::string nested = JoinPath((*cgroup)->path(), "inner");
    ASSERT_TRUE(cgroup_internal::MakeCgroupDir(nested).ok());
    ASSERT_TRUE(cgroup_internal::WriteCgroupFile(JoinPath(nested, "cgroup.procs"), absl::StrCat(child.pid())).ok());
    EXPECT_EQ(*(*cgroup)->Pids(), std::vector<pid_t>{child.pid()});

    absl::Status busy = (*cgroup)->Remove();
    EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition) << busy;
    EXPECT_TRUE(PathExists(nested));
    ASSERT_TRUE((*cgroup)->KillAll().ok());
    EXPECT_TRUE(KilledBySigkill(child.Wait()));
    EXPECT_TRUE((*cgroup)->Remove().ok());
    EXPECT_FALSE(PathExists((*cgroup)->path()));
  });
}

TEST_F(CgroupV2Test, EnablesControllersOnlyWithoutInternalProcesses) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string* skip) {
    // Where memory/pids/cpu are offered, CreateAddKillRemove checks that they
    // get enabled. Without them (a hybrid host), hugetlb, which cgroup2 then
    // does offer, stands in to run the same subtree_control writes.
    const std::vector<std::string> offered = Controllers(options.root);
    if (Has(offered, "memory") || Has(offered, "pids") || Has(offered, "cpu")) {
      *skip = "memory/pids/cpu are offered here, CreateAddKillRemove covers enabling them";
      return;
    }
    if (!Has(offered, "hugetlb")) {
      *skip = "cgroup2 offers no controller here to enable";
      return;
    }
    const std::string root_control = JoinPath(options.root, "cgroup.subtree_control");
    const bool root_had = Has(cgroup_internal::SplitControllers(ReadTrimmed(root_control)), "hugetlb");
    const std::string parent = JoinPath(options.root, options.parent);
    absl::Cleanup restore = [&] {
      // Children first: a controller in use below cannot be turned off.
      EXPECT_TRUE(cgroup_internal::RemoveCgroupTree(parent).ok());
      if (!root_had) {
        EXPECT_TRUE(cgroup_internal::WriteCgroupFile(root_control, "-hugetlb").ok());
      }
    };
    static constexpr absl::string_view kWanted[] = {"memory", "hugetlb"};
    ASSERT_TRUE(cgroup_internal::EnableControllers(options.root, kWanted).ok());
    ASSERT_TRUE(cgroup_internal::EnsureCgroupDir(parent).ok());
    absl::Status enabled = cgroup_internal::EnableControllers(parent, kWanted);
    ASSERT_TRUE(enabled.ok()) << enabled;
    EXPECT_EQ(ReadTrimmed(JoinPath(parent, "cgroup.subtree_control")), "hugetlb");
    const std::string inner = JoinPath(parent, "busy");
    ASSERT_TRUE(cgroup_internal::MakeCgroupDir(inner).ok());
    EXPECT_EQ(Controllers(inner), std::vector<std::string>{"hugetlb"});
    // Enabling twice is a no-op.
    EXPECT_TRUE(cgroup_internal::EnableControllers(parent, kWanted).ok());

    // A cgroup holding a process cannot hand controllers to children.
    Child child = Child::Spawn(ReportUpAndWait);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(cgroup_internal::WriteCgroupFile(JoinPath(inner, "cgroup.procs"), absl::StrCat(child.pid())).ok());
    child.Go();
    ASSERT_EQ(child.ReadLine(), "up");
    absl::Status busy = cgroup_internal::EnableControllers(inner, kWanted);
    EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition) << busy;
    EXPECT_TRUE(absl::StrContains(busy.message(), "holds processes")) << busy;
    EXPECT_TRUE(absl::StrContains(busy.message(), "write +hugetlb to " + inner + "/cgroup.subtree_control")) << busy;
    EXPECT_TRUE(cgroup_internal::KillV2ByFreezing(inner).ok());
    EXPECT_TRUE(KilledBySigkill(child.Wait()));
  });
}

TEST_F(CgroupV2Test, LimitWithoutControllerFailsBeforeCreating) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string* skip) {
    const std::vector<std::string> offered = Controllers(options.root);
    const std::pair<absl::string_view, CgroupLimits> cases[] = {
        {"memory", {.memory_bytes = 16 * kMiB}}, {"pids", {.pids = 5}}, {"cpu", {.cpus = 0.5}}};
    int checked = 0;
    for (const auto& [controller, limits] : cases) {
      if (Has(offered, controller)) continue;
      ++checked;
      absl::Status status = CreateCgroup("lim", limits, options).status();
      EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
      EXPECT_TRUE(absl::StrContains(status.message(), absl::StrCat("cgroup v2 ", controller, " controller")))
          << status;
      EXPECT_FALSE(PathExists(JoinPath(options.root, options.parent))) << "created before checking";
    }
    if (checked == 0) *skip = "memory, pids and cpu are all offered by cgroup2 here";
  });
}

TEST_F(CgroupV2Test, PidsLimitMakesForkFailWithEagain) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string* skip) {
    if (!Has(Controllers(options.root), "pids")) {
      *skip = NotOffered("pids", options.root);
      return;
    }
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup("forks", {.pids = 5}, options);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    ExpectPidsLimitStopsForks(**cgroup);
    EXPECT_TRUE((*cgroup)->Remove().ok());
  });
}

TEST_F(CgroupV2Test, MemoryLimitOomKillsAndStatsSaySo) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string* skip) {
    if (!Has(Controllers(options.root), "memory")) {
      *skip = NotOffered("memory", options.root);
      return;
    }
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup("mem", {.memory_bytes = 16 * kMiB}, options);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    ExpectOomKill(**cgroup);
    EXPECT_TRUE((*cgroup)->Remove().ok());
  });
}

TEST_F(CgroupV2Test, CpuQuotaThrottles) {
  RunInPrivateCgroup2([](const CgroupOptions& options, std::string* skip) {
    if (!Has(Controllers(options.root), "cpu")) {
      *skip = NotOffered("cpu", options.root);
      return;
    }
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = CreateCgroup("spin", {.cpus = 0.5}, options);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    ExpectCpuThrottled(**cgroup, JoinPath((*cgroup)->path(), "cpu.stat"));
    EXPECT_TRUE((*cgroup)->Remove().ok());
  });
}

}  // namespace
}  // namespace diyc::netcore
