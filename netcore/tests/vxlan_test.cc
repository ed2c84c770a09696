#include "diyc/netcore/vxlan.h"

#include <algorithm>

#include "diyc/netcore/errors.h"
#include "diyc/netcore/sysctl.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using testing::TempNetnsTest;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

int CountTo(const std::vector<FdbEntry>& entries, const IpAddress& dst) {
  return std::count_if(entries.begin(), entries.end(), [&](const FdbEntry& e) { return e.dst == dst; });
}

TEST_F(TempNetnsTest, VxlanOnABridgeWithFloodingPeers) {
  // Everything inside namespace a, so nothing touches the host's links.
  absl::StatusOr<NlSocket> in_a = NlSocket::OpenIn(a_);
  ASSERT_TRUE(in_a.ok()) << in_a.status();
  absl::StatusOr<LinkInfo> bridge = CreateBridge(*in_a, {.name = "br0", .mtu = 1450});
  ASSERT_TRUE(bridge.ok()) << bridge.status();

  VxlanOptions options{.name = "vx0", .id = 4242, .port = 4789, .local = Ip("192.0.2.1"), .mtu = 1450,
                       .master_index = bridge->index, .alias = "diyc:test"};
  absl::StatusOr<LinkInfo> vx = CreateVxlan(*in_a, options);
  ASSERT_TRUE(vx.ok()) << vx.status();
  EXPECT_EQ(vx->kind, "vxlan");
  EXPECT_EQ(vx->master_index, bridge->index);
  EXPECT_EQ(vx->mtu, 1450u);
  EXPECT_EQ(vx->alias, "diyc:test");
  EXPECT_TRUE(vx->up);
  EXPECT_EQ(CreateVxlan(*in_a, options).status().code(), absl::StatusCode::kAlreadyExists);

  absl::Status added = AddVxlanFloodPeer(*in_a, vx->index, Ip("192.0.2.2"));
  ASSERT_TRUE(added.ok()) << added;
  ASSERT_TRUE(AddVxlanFloodPeer(*in_a, vx->index, Ip("192.0.2.3")).ok());
  absl::Status again = AddVxlanFloodPeer(*in_a, vx->index, Ip("192.0.2.3"));
  ASSERT_TRUE(again.ok()) << again;
  absl::StatusOr<std::vector<FdbEntry>> fdb = ListVxlanFdb(*in_a, vx->index);
  ASSERT_TRUE(fdb.ok()) << fdb.status();
  EXPECT_EQ(fdb->size(), 2u);
  EXPECT_EQ(CountTo(*fdb, Ip("192.0.2.2")), 1);
  EXPECT_EQ(CountTo(*fdb, Ip("192.0.2.3")), 1);
  for (const FdbEntry& e : *fdb) {
    EXPECT_EQ(e.mac, "00:00:00:00:00:00");
    EXPECT_TRUE(e.permanent);
  }

  ASSERT_TRUE(RemoveVxlanPeer(*in_a, vx->index, Ip("192.0.2.2")).ok());
  ASSERT_TRUE(RemoveVxlanPeer(*in_a, vx->index, Ip("192.0.2.2")).ok());
  fdb = ListVxlanFdb(*in_a, vx->index);
  ASSERT_TRUE(fdb.ok());
  EXPECT_EQ(CountTo(*fdb, Ip("192.0.2.2")), 0);
  EXPECT_EQ(CountTo(*fdb, Ip("192.0.2.3")), 1);
}

TEST_F(TempNetnsTest, VxlanRejectsBadInput) {
  absl::StatusOr<NlSocket> in_a = NlSocket::OpenIn(a_);
  ASSERT_TRUE(in_a.ok());
  EXPECT_EQ(CreateVxlan(*in_a, {.name = "vx0", .id = 0, .local = Ip("192.0.2.1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateVxlan(*in_a, {.name = "vx0", .id = 1u << 24, .local = Ip("192.0.2.1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateVxlan(*in_a, {.name = "vx0", .id = 7, .local = Ip("fd00::1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateVxlan(*in_a, {.name = "vx0", .id = 7, .port = 0, .local = Ip("192.0.2.1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::optional<LinkInfo>> none = FindLink(*in_a, std::string("vx0"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

}  // namespace
}  // namespace diyc::netcore
