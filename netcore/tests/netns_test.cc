#include "diyc/netcore/netns.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "diyc/netcore/link.h"
#include "diyc/netcore/nl_socket.h"
#include "diyc/netcore/sysctl.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using testing::TempNetnsTest;
using testing::UniqueName;

TEST_F(TempNetnsTest, CreateIsVisibleLikeIpNetns) {
  absl::StatusOr<std::vector<std::string>> names = Netns::List();
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_NE(std::find(names->begin(), names->end(), a_name_), names->end());
  EXPECT_EQ(Netns::Create(a_name_).status().code(), absl::StatusCode::kAlreadyExists);

  absl::StatusOr<Netns> again = Netns::OpenName(a_name_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(*again->SameAs(a_));
  EXPECT_FALSE(*a_.SameAs(b_));
  absl::StatusOr<Netns> host = Netns::Current();
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE(*host->SameAs(a_));
  absl::StatusOr<Netns> by_pid = Netns::OpenPid(getpid());
  ASSERT_TRUE(by_pid.ok()) << by_pid.status();
  EXPECT_TRUE(*by_pid->SameAs(*host));
}

TEST_F(TempNetnsTest, RemoveLeavesNoMountPoint) {
  ASSERT_TRUE(Netns::Remove(a_name_).ok());
  struct stat st;
  EXPECT_NE(stat((std::string(kNetnsRunDir) + "/" + a_name_).c_str(), &st), 0);
  EXPECT_EQ(Netns::Remove(a_name_).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Netns::OpenName(a_name_).status().code(), absl::StatusCode::kNotFound);
  // The open handle keeps the namespace usable.
  absl::StatusOr<NlSocket> sock = NlSocket::OpenIn(a_);
  ASSERT_TRUE(sock.ok()) << sock.status();
  EXPECT_TRUE(GetLink(*sock, std::string("lo")).ok());
}

TEST(Netns, RejectsBadNamesAndPaths) {
  EXPECT_EQ(Netns::Create("../etc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Netns::OpenName("nope-" + UniqueName("x")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Netns::OpenPath("relative/path").status().code(), absl::StatusCode::kInvalidArgument);
  // A regular file is not a namespace.
  EXPECT_EQ(Netns::OpenPath("/proc/self/status").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Netns::OpenPid(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TempNetnsTest, RunInNetnsLeavesCallerWhereItWas) {
  absl::StatusOr<Netns> before = Netns::Current();
  ASSERT_TRUE(before.ok());
  bool inside = false;
  ASSERT_TRUE(RunInNetns(a_, [&] {
                absl::StatusOr<Netns> here = Netns::Current();
                inside = here.ok() && *here->SameAs(a_);
                return absl::OkStatus();
              }).ok());
  EXPECT_TRUE(inside);
  absl::StatusOr<Netns> after = Netns::Current();
  EXPECT_TRUE(*after->SameAs(*before));
}

TEST_F(TempNetnsTest, SysctlIsPerNamespace) {
  // New namespaces may inherit the host's value: set both explicitly.
  ASSERT_TRUE(WriteSysctl(&a_, "net.ipv4.ip_forward", "1").ok());
  ASSERT_TRUE(WriteSysctl(&b_, "net.ipv4.ip_forward", "0").ok());
  EXPECT_EQ(*ReadSysctl(&a_, "net.ipv4.ip_forward"), "1");
  EXPECT_EQ(*ReadSysctl(&b_, "net.ipv4.ip_forward"), "0");
  EXPECT_EQ(WriteSysctl(&a_, "net.ipv4.nonexistent_key", "1").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteSysctl(&a_, "../../etc/passwd", "1").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace diyc::netcore
