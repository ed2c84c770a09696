// Pure cgroup logic: validation, layout detection from mount tables given as
// text, value formatting and parsing. Needs no root and touches no cgroup.
#include "diyc/netcore/cgroup.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "netcore/src/cgroup_internal.h"

namespace diyc::netcore {
namespace {

using cgroup_internal::CgroupMounts;
using cgroup_internal::FindCgroupMounts;

// This development machine: hybrid, with cpu and cpuacct mounted apart and a
// cgroup2 mount at unified that offers no memory/pids/cpu.
constexpr char kHybridSplitCpu[] = R"(22 1 0:21 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
)";

// systemd's hybrid layout on Debian 10 / Ubuntu 20.04 (optional fields).
constexpr char kSystemdHybrid[] =
    R"(25 30 0:23 / /sys ro,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
37 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
38 31 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
39 31 0:34 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,freezer
40 31 0:35 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,net_cls,net_prio
)";

constexpr char kPureV2[] =
    R"(25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
)";

TEST(CgroupDetect, HybridWithSplitCpuIsV1) {
  absl::StatusOr<CgroupLayout> layout = DetectCgroupLayoutFromMountinfo(kHybridSplitCpu);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(*layout, CgroupLayout::kV1);

  absl::StatusOr<CgroupMounts> mounts = FindCgroupMounts(kHybridSplitCpu, "/sys/fs/cgroup");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_FALSE(mounts->v2_at_root);
  ASSERT_EQ(mounts->v1.size(), 4u);
  EXPECT_EQ(mounts->v1[0], std::make_pair(std::string("memory"), std::string("/sys/fs/cgroup/memory")));
  EXPECT_EQ(mounts->v1[1], std::make_pair(std::string("pids"), std::string("/sys/fs/cgroup/pids")));
  EXPECT_EQ(mounts->v1[2], std::make_pair(std::string("cpu"), std::string("/sys/fs/cgroup/cpu")));
  EXPECT_EQ(mounts->v1[3], std::make_pair(std::string("freezer"), std::string("/sys/fs/cgroup/freezer")));
}

TEST(CgroupDetect, SystemdHybridUsesTheCoMountedCpuHierarchy) {
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(kSystemdHybrid), CgroupLayout::kV1);
  absl::StatusOr<CgroupMounts> mounts = FindCgroupMounts(kSystemdHybrid, "/sys/fs/cgroup/");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_EQ(mounts->V1MountPoint("cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(mounts->V1MountPoint("memory"), "/sys/fs/cgroup/memory");
  // "cpu" is a whole option, not a prefix of "cpuacct" or "cpuset".
  EXPECT_EQ(mounts->V1MountPoint("cpuacct"), "");
}

TEST(CgroupDetect, PureV2) {
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(kPureV2), CgroupLayout::kV2);
  EXPECT_TRUE(FindCgroupMounts(kPureV2, "/sys/fs/cgroup")->v1.empty());
}

TEST(CgroupDetect, OtherRootsAndEscapedMountPoints) {
  // A private cgroup2 mount on a directory whose name has a space.
  const std::string table = std::string(kHybridSplitCpu) +
                            "90 22 0:38 / /tmp/cg\\040two rw,relatime - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(table, "/tmp/cg two"), CgroupLayout::kV2);
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(table), CgroupLayout::kV1);
  // Hierarchies outside the root do not count.
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo(kHybridSplitCpu, "/srv/cgroup").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo(kHybridSplitCpu, "/sys/fs/cgroup/memory").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CgroupDetect, LaterMountsHideEarlierOnes) {
  // cgroup2 mounted over a v1 tree: the v1 hierarchies are no longer visible.
  const std::string over = std::string(kHybridSplitCpu) +
                           "99 23 0:40 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(over), CgroupLayout::kV2);
  EXPECT_TRUE(FindCgroupMounts(over, "/sys/fs/cgroup")->v1.empty());
  // And a tmpfs mounted over a cgroup2 root hides it again.
  const std::string hidden = std::string(kPureV2) + "99 35 0:41 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo(hidden).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CgroupDetect, AParentListedLaterDoesNotHideItsChildren) {
  // After a mount move the listing need not be in mount order: "/" (id 22)
  // comes last but is what the cgroup mounts sit on.
  constexpr char kTable[] = R"(31 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
22 1 0:21 / / rw - overlay overlay rw
)";
  EXPECT_EQ(*DetectCgroupLayoutFromMountinfo(kTable), CgroupLayout::kV1);
  EXPECT_EQ(FindCgroupMounts(kTable, "/sys/fs/cgroup")->V1MountPoint("pids"), "/sys/fs/cgroup/pids");
  // A real new root mounted over "/" (parent 22) does hide them.
  const std::string over = std::string(kTable) + "50 22 0:50 / / rw - tmpfs tmpfs rw\n";
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo(over).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CgroupDetect, HybridWithoutResourceControllersInV1IsRejected) {
  // Only the systemd named hierarchy in v1: memory/pids/cpu live in
  // unified, which is not the root diyc was pointed at.
  constexpr char kTable[] = R"(31 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
)";
  absl::StatusOr<CgroupLayout> layout = DetectCgroupLayoutFromMountinfo(kTable);
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(layout.status().message(), "/sys/fs/cgroup")) << layout.status();
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo("").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CgroupDetect, MalformedLinesAreErrors) {
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo("31 23 0:28 / /sys/fs/cgroup rw\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo("1 2 3 4 5 6 7 8 9 10\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DetectCgroupLayoutFromMountinfo("x 2 0:1 / /a rw - cgroup2 cgroup2 rw\n").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CgroupDetect, ThisHostHasALayout) {
  // Whatever the machine, the real table parses.
  absl::StatusOr<CgroupLayout> layout = DetectCgroupLayout();
  if (!layout.ok()) {
    EXPECT_EQ(layout.status().code(), absl::StatusCode::kFailedPrecondition) << layout.status();
  }
}

TEST(CgroupValidate, Names) {
  EXPECT_TRUE(ValidateCgroupName("web-1").ok());
  EXPECT_TRUE(ValidateCgroupName("a").ok());
  EXPECT_TRUE(ValidateCgroupName("A_b.c-9").ok());
  EXPECT_TRUE(ValidateCgroupName(std::string(63, 'x')).ok());
  for (absl::string_view bad : {"", ".", "..", "-x", "_x", ".x", "a/b", "a b", "a\nb", "x:y"}) {
    EXPECT_EQ(ValidateCgroupName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ValidateCgroupName(std::string(64, 'x')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateCgroupName(absl::string_view("a\0b", 3)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(cgroup_internal::ValidateCgroupParent("diyc").ok());
  EXPECT_TRUE(cgroup_internal::ValidateCgroupParent("system.slice/diyc").ok());
  for (absl::string_view bad : {"", "/diyc", "diyc/", "a//b", "../x", "a/../b"}) {
    EXPECT_EQ(cgroup_internal::ValidateCgroupParent(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(CgroupValidate, Limits) {
  EXPECT_TRUE(ValidateCgroupLimits({}).ok());
  EXPECT_TRUE(ValidateCgroupLimits({.memory_bytes = kMinCgroupMemoryBytes, .pids = 1, .cpus = 0.01}).ok());
  EXPECT_TRUE(ValidateCgroupLimits({.memory_bytes = int64_t{1} << 40, .pids = kMaxCgroupPids, .cpus = 1024}).ok());

  absl::Status memory = ValidateCgroupLimits({.memory_bytes = kMinCgroupMemoryBytes - 1});
  EXPECT_EQ(memory.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(memory.message(), "memory limit 6291455")) << memory;
  EXPECT_EQ(ValidateCgroupLimits({.memory_bytes = -1}).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(ValidateCgroupLimits({.pids = -1}).code(), absl::StatusCode::kInvalidArgument);
  absl::Status pids = ValidateCgroupLimits({.pids = kMaxCgroupPids + 1});
  EXPECT_EQ(pids.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(pids.message(), "pids limit")) << pids;

  for (double bad : {-1.0, 0.005, 1024.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
    absl::Status cpus = ValidateCgroupLimits({.cpus = bad});
    EXPECT_EQ(cpus.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(cpus.message(), "cpu limit")) << cpus;
  }
}

TEST(CgroupValidate, CreateChecksBeforeTouchingAnything) {
  // The root does not exist: any attempt to use it would fail differently.
  const CgroupOptions options{.layout = CgroupLayout::kV2, .root = "/nonexistent/diyc-cgroup-root"};
  EXPECT_EQ(CreateCgroup("x", {.memory_bytes = 1 << 20}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCgroup("../x", {}, options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCgroup("x", {}, {.parent = "a/../b", .layout = CgroupLayout::kV2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCgroup("x", {}, {.root = "relative"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenCgroup("x", {.layout = CgroupLayout::kV2, .root = "/proc"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(OpenCgroup("x", options).status().code(), absl::StatusCode::kNotFound);
}

TEST(CgroupValues, Formatting) {
  using namespace cgroup_internal;  // NOLINT
  EXPECT_EQ(CpuQuotaUs(0.5), 50000);
  EXPECT_EQ(CpuQuotaUs(0.01), 1000);
  EXPECT_EQ(CpuQuotaUs(1.5), 150000);
  EXPECT_EQ(CpuQuotaUs(1.0 / 3), 33333);
  EXPECT_EQ(CpuQuotaUs(0.1), 10000);  // no 9999 from binary rounding
  EXPECT_EQ(V2CpuMax(0), "max 100000");
  EXPECT_EQ(V2CpuMax(0.5), "50000 100000");
  EXPECT_EQ(V2CpuMax(2), "200000 100000");
  EXPECT_EQ(V2MemoryMax(0), "max");
  EXPECT_EQ(V2MemoryMax(16 << 20), "16777216");
  EXPECT_EQ(V2PidsMax(0), "max");
  EXPECT_EQ(V2PidsMax(5), "5");
}

TEST(CgroupValues, Parsing) {
  using namespace cgroup_internal;  // NOLINT
  constexpr char kEvents[] = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
  EXPECT_EQ(*ParseKeyedValue(kEvents, "oom_kill"), 1);
  EXPECT_EQ(*ParseKeyedValue(kEvents, "oom"), 2);
  EXPECT_EQ(ParseKeyedValue(kEvents, "oom_ki").status().code(), absl::StatusCode::kNotFound);
  constexpr char kOomControl[] = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  EXPECT_EQ(*ParseKeyedValue(kOomControl, "oom_kill"), 3);
  EXPECT_EQ(*ParseKeyedValue("populated 1\nfrozen 0\n", "populated"), 1);
  EXPECT_FALSE(ParseKeyedValue("populated yes\n", "populated").ok());

  EXPECT_EQ(*ParseSingleValue("16777216\n"), 16777216);
  EXPECT_FALSE(ParseSingleValue("max\n").ok());

  EXPECT_EQ(*ParsePids("12\n345\n"), (std::vector<pid_t>{12, 345}));
  EXPECT_TRUE(ParsePids("").ok() && ParsePids("")->empty());
  EXPECT_FALSE(ParsePids("12\nabc\n").ok());
  EXPECT_FALSE(ParsePids("0\n").ok());

  EXPECT_EQ(SplitControllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
            (std::vector<std::string>{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}));
  EXPECT_TRUE(SplitControllers("\n").empty());

  std::vector<pid_t> pids = {5, 3, 5, 1, 3};
  SortUnique(&pids);
  EXPECT_EQ(pids, (std::vector<pid_t>{1, 3, 5}));
  EXPECT_EQ(JoinPath("/", "diyc"), "/diyc");
  EXPECT_EQ(JoinPath("/sys/fs/cgroup", "diyc/x"), "/sys/fs/cgroup/diyc/x");
}

TEST(CgroupValues, WriteErrorsNameValueAndFile) {
  absl::Status status = cgroup_internal::WriteCgroupFile("/nonexistent/cpu.cfs_quota_us", "100000");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "write 100000 to /nonexistent/cpu.cfs_quota_us: No such file or directory");
}

}  // namespace
}  // namespace diyc::netcore
