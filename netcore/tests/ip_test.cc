#include "diyc/netcore/ip.h"

#include <string>

#include "gtest/gtest.h"

namespace diyc::netcore {
namespace {

class RejectedAddress : public testing::TestWithParam<std::string> {};

TEST_P(RejectedAddress, IsInvalidArgument) {
  absl::StatusOr<IpAddress> address = IpAddress::Parse(GetParam());
  EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument) << GetParam();
}

// What inet_aton would accept, and other near misses.
INSTANTIATE_TEST_SUITE_P(Strict, RejectedAddress,
                         testing::Values("10.1", "010.0.0.1", "0x0a.0.0.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n",
                                         "300.1.1.1", "1.2.3", "1.2.3.4.5", "", "fe80::1%eth0", "::g",
                                         std::string("10.0.0.1\0junk", 13), "1.2.3.-4"));

TEST(IpAddress, ParsesAndFormats) {
  absl::StatusOr<IpAddress> v4 = IpAddress::Parse("10.77.0.2");
  ASSERT_TRUE(v4.ok());
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->v4(), 0x0a4d0002u);
  EXPECT_EQ(v4->ToString(), "10.77.0.2");
  absl::StatusOr<IpAddress> v6 = IpAddress::Parse("FD00:0:0::1");
  ASSERT_TRUE(v6.ok());
  EXPECT_FALSE(v6->is_v4());
  EXPECT_EQ(v6->ToString(), "fd00::1");
  EXPECT_EQ(IpAddress::FromV4(0x0a4d0002u), *v4);
}

class RejectedPrefix : public testing::TestWithParam<std::string> {};

TEST_P(RejectedPrefix, IsInvalidArgument) {
  EXPECT_EQ(IpPrefix::Parse(GetParam()).status().code(), absl::StatusCode::kInvalidArgument) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Strict, RejectedPrefix,
                         testing::Values("10.0.0.0/33", "10.1/8", "300.1.1.1/24", "10.0.0.0/", "10.0.0.0",
                                         "10.0.0.0/024", "10.0.0.0/+8", "10.0.0.0/8 ", "1.2.3.4 /24",
                                         "fd00::/129", "/24", "10.0.0.0//24", "10.0.0.0/-1"));

TEST(IpPrefix, ParsesNetworksAndInterfaceAddresses) {
  absl::StatusOr<IpPrefix> p = IpPrefix::Parse("10.77.0.2/24");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->prefix_len(), 24);
  EXPECT_EQ(p->Network().ToString(), "10.77.0.0/24");
  EXPECT_TRUE(p->Contains(*IpAddress::Parse("10.77.0.255")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("10.77.1.0")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("fd00::1")));
  EXPECT_EQ(IpPrefix::ParseNetwork("10.77.0.2/24").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IpPrefix::ParseNetwork("10.77.0.0/24").ok());
  EXPECT_EQ(IpPrefix::Parse("0.0.0.0/0")->Network().ToString(), "0.0.0.0/0");
  EXPECT_EQ(IpPrefix::Parse("fd00:1:2:3::5/64")->Network().ToString(), "fd00:1:2:3::/64");
  EXPECT_EQ(IpPrefix::Parse("10.1.2.3/13")->Network().ToString(), "10.0.0.0/13");
}

TEST(IpPrefix, Overlaps) {
  IpPrefix a = *IpPrefix::Parse("10.0.0.0/8");
  IpPrefix b = *IpPrefix::Parse("10.5.0.0/16");
  IpPrefix c = *IpPrefix::Parse("11.0.0.0/16");
  EXPECT_TRUE(a.Overlaps(b));
  EXPECT_TRUE(b.Overlaps(a));
  EXPECT_FALSE(a.Overlaps(c));
  EXPECT_FALSE(a.Overlaps(*IpPrefix::Parse("fd00::/8")));
}

}  // namespace
}  // namespace diyc::netcore
