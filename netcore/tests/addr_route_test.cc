#include <algorithm>

#include "diyc/netcore/addr.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/route.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using testing::TempNetnsTest;

class AddrRouteTest : public TempNetnsTest {
 protected:
  void SetUp() override {
    TempNetnsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto sock = NlSocket::OpenIn(a_);
    ASSERT_TRUE(sock.ok());
    a_sock_.emplace(*std::move(sock));
    // A veth pair entirely inside a.
    auto link = CreateVeth(*a_sock_, {.name = "v0", .peer_name = "v1", .up = true});
    ASSERT_TRUE(link.ok()) << link.status();
    v0_ = link->index;
    ASSERT_TRUE(SetLinkUp(*a_sock_, std::string("v1"), true).ok());
  }
  std::optional<NlSocket> a_sock_;
  int v0_ = 0;
};

TEST_F(AddrRouteTest, AddListDeleteAddresses) {
  IpPrefix v4 = *IpPrefix::Parse("10.91.0.2/24");
  IpPrefix v6 = *IpPrefix::Parse("fd00:91::2/64");
  ASSERT_TRUE(AddAddress(*a_sock_, v0_, v4).ok());
  ASSERT_TRUE(AddAddress(*a_sock_, v0_, v6, {.no_dad = true}).ok());
  EXPECT_EQ(AddAddress(*a_sock_, v0_, v4).code(), absl::StatusCode::kAlreadyExists);

  auto addrs = ListAddresses(*a_sock_, v0_);
  ASSERT_TRUE(addrs.ok());
  auto has = [&](const IpPrefix& p) {
    return std::any_of(addrs->begin(), addrs->end(), [&](const AddrInfo& a) { return a.prefix == p; });
  };
  EXPECT_TRUE(has(v4));
  EXPECT_TRUE(has(v6));
  auto only_v4 = ListAddresses(*a_sock_, v0_, IpFamily::kV4);
  EXPECT_TRUE(std::all_of(only_v4->begin(), only_v4->end(), [](const AddrInfo& a) { return a.prefix.address().is_v4(); }));

  ASSERT_TRUE(DeleteAddress(*a_sock_, v0_, v4).ok());
  addrs = ListAddresses(*a_sock_, v0_);
  EXPECT_FALSE(has(v4));
  EXPECT_EQ(DeleteAddress(*a_sock_, v0_, v4).code(), absl::StatusCode::kNotFound);
}

TEST_F(AddrRouteTest, DefaultAndPrefixRoutes) {
  ASSERT_TRUE(AddAddress(*a_sock_, v0_, *IpPrefix::Parse("10.91.0.2/24")).ok());
  RouteSpec def{.dst = DefaultRoute(IpFamily::kV4), .gateway = *IpAddress::Parse("10.91.0.1")};
  ASSERT_TRUE(AddRoute(*a_sock_, def).ok());
  EXPECT_EQ(AddRoute(*a_sock_, def).code(), absl::StatusCode::kAlreadyExists);
  RouteSpec on_link{.dst = *IpPrefix::Parse("10.92.0.0/16"), .oif = v0_};
  ASSERT_TRUE(AddRoute(*a_sock_, on_link).ok());
  RouteSpec via{.dst = *IpPrefix::Parse("10.93.0.0/16"), .gateway = *IpAddress::Parse("10.91.0.9")};
  ASSERT_TRUE(AddRoute(*a_sock_, via).ok());

  auto routes = ListRoutes(*a_sock_, IpFamily::kV4);
  ASSERT_TRUE(routes.ok());
  auto find = [&](const std::string& dst) -> const RouteInfo* {
    for (const RouteInfo& r : *routes) {
      if (r.dst.ToString() == dst) return &r;
    }
    return nullptr;
  };
  ASSERT_NE(find("0.0.0.0/0"), nullptr);
  EXPECT_EQ(find("0.0.0.0/0")->gateway->ToString(), "10.91.0.1");
  EXPECT_EQ(find("0.0.0.0/0")->oif, v0_);
  ASSERT_NE(find("10.92.0.0/16"), nullptr);
  EXPECT_FALSE(find("10.92.0.0/16")->gateway.has_value());
  ASSERT_NE(find("10.93.0.0/16"), nullptr);

  ASSERT_TRUE(DeleteRoute(*a_sock_, def).ok());
  ASSERT_TRUE(DeleteRoute(*a_sock_, on_link).ok());
  EXPECT_EQ(DeleteRoute(*a_sock_, on_link).code(), absl::StatusCode::kNotFound);
  routes = ListRoutes(*a_sock_, IpFamily::kV4);
  EXPECT_EQ(find("0.0.0.0/0"), nullptr);
}

TEST_F(AddrRouteTest, RejectsInconsistentRoutes) {
  EXPECT_EQ(AddRoute(*a_sock_, {.dst = *IpPrefix::Parse("10.0.0.0/8")}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AddRoute(*a_sock_, {.dst = *IpPrefix::Parse("10.0.0.1/8"), .oif = v0_}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AddRoute(*a_sock_, {.dst = DefaultRoute(IpFamily::kV4), .gateway = *IpAddress::Parse("fd00::1")}).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace diyc::netcore
