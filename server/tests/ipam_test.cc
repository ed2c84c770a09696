#include "ipam.h"

#include <set>

#include "gtest/gtest.h"

namespace diyc::server {
namespace {

using netcore::IpAddress;
using netcore::IpPrefix;

Ipam Make(const char* subnet, const char* gateway) {
  absl::StatusOr<Ipam> ipam = Ipam::Create(*IpPrefix::Parse(subnet), *IpAddress::Parse(gateway));
  EXPECT_TRUE(ipam.ok()) << ipam.status();
  return *std::move(ipam);
}

TEST(Ipam, HandsOutEveryHostOnceAndNeverReservedOnes) {
  Ipam ipam = Make("10.9.0.0/29", "10.9.0.1");
  EXPECT_EQ(ipam.capacity(), 5u);
  std::set<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<IpAddress> ip = ipam.Allocate();
    ASSERT_TRUE(ip.ok()) << ip.status();
    seen.insert(ip->ToString());
  }
  EXPECT_EQ(seen, (std::set<std::string>{"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"}));
  EXPECT_EQ(ipam.Allocate().status().code(), absl::StatusCode::kResourceExhausted);
  ipam.Release(*IpAddress::Parse("10.9.0.4"));
  EXPECT_EQ(ipam.Allocate()->ToString(), "10.9.0.4");
}

TEST(Ipam, RangeLimitsAllocationButNotStaticAddresses) {
  absl::StatusOr<Ipam> ipam =
      Ipam::Create(*IpPrefix::Parse("10.9.0.0/24"), *IpAddress::Parse("10.9.0.65"), *IpPrefix::Parse("10.9.0.64/29"));
  ASSERT_TRUE(ipam.ok()) << ipam.status();
  EXPECT_EQ(ipam->capacity(), 7u);  // .64 .. .71 less the gateway .65
  std::set<std::string> seen;
  for (int i = 0; i < 7; ++i) seen.insert(ipam->Allocate()->ToString());
  EXPECT_EQ(seen, (std::set<std::string>{"10.9.0.64", "10.9.0.66", "10.9.0.67", "10.9.0.68", "10.9.0.69",
                                         "10.9.0.70", "10.9.0.71"}));
  EXPECT_EQ(ipam->Allocate().status().code(), absl::StatusCode::kResourceExhausted);
  // Another node's share is still the caller's to choose explicitly.
  EXPECT_TRUE(ipam->Reserve(*IpAddress::Parse("10.9.0.200")).ok());
  ipam->Release(*IpAddress::Parse("10.9.0.200"));
  EXPECT_EQ(ipam->Allocate().status().code(), absl::StatusCode::kResourceExhausted);
  ipam->Release(*IpAddress::Parse("10.9.0.70"));
  EXPECT_EQ(ipam->Allocate()->ToString(), "10.9.0.70");

  for (const char* bad : {"10.9.1.0/29", "10.9.0.0/23", "10.9.0.66/29", "10.9.0.255/32"}) {
    EXPECT_EQ(Ipam::Create(*IpPrefix::Parse("10.9.0.0/24"), *IpAddress::Parse("10.9.0.1"), *IpPrefix::Parse(bad))
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(Ipam, StaticAddresses) {
  Ipam ipam = Make("10.9.0.0/24", "10.9.0.1");
  EXPECT_TRUE(ipam.Reserve(*IpAddress::Parse("10.9.0.50")).ok());
  EXPECT_EQ(ipam.Reserve(*IpAddress::Parse("10.9.0.50")).code(), absl::StatusCode::kAlreadyExists);
  for (const char* bad : {"10.9.0.0", "10.9.0.255", "10.9.0.1", "10.9.1.5"}) {
    EXPECT_EQ(ipam.Reserve(*IpAddress::Parse(bad)).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // Allocation skips the reserved one.
  for (int i = 0; i < 252; ++i) {
    absl::StatusOr<IpAddress> ip = ipam.Allocate();
    ASSERT_TRUE(ip.ok()) << i;
    EXPECT_NE(ip->ToString(), "10.9.0.50");
  }
  EXPECT_EQ(ipam.Allocate().status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(Ipam, FreedAddressesAreNotReusedAtOnce) {
  Ipam ipam = Make("10.9.0.0/24", "10.9.0.1");
  IpAddress first = *ipam.Allocate();
  ipam.Release(first);
  EXPECT_NE(*ipam.Allocate(), first);
}

TEST(Ipam, GatewayAnywhereInSubnet) {
  Ipam ipam = Make("10.9.0.0/30", "10.9.0.2");
  EXPECT_EQ(ipam.Allocate()->ToString(), "10.9.0.1");
  EXPECT_FALSE(ipam.Allocate().ok());
  EXPECT_EQ(Ipam::Create(*IpPrefix::Parse("10.9.0.0/24"), *IpAddress::Parse("10.9.0.0")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ipam::Create(*IpPrefix::Parse("10.9.0.0/24"), *IpAddress::Parse("10.8.0.1")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Subnets, RejectsUnusableRanges) {
  for (const char* bad : {"10.0.0.5/24", "10.0.0.0/31", "10.0.0.0/7", "127.0.0.0/24", "169.254.1.0/24",
                          "224.0.0.0/24", "0.0.0.0/24"}) {
    EXPECT_EQ(ValidateSubnet(*IpPrefix::Parse(bad)).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateSubnet(*IpPrefix::Parse("172.16.0.0/24")).ok());
  EXPECT_TRUE(ValidateSubnet6(*IpPrefix::Parse("fd00:1::/64")).ok());
  EXPECT_FALSE(ValidateSubnet6(*IpPrefix::Parse("fe80::/64")).ok());
  EXPECT_FALSE(ValidateSubnet6(*IpPrefix::Parse("fd00:1::/48")).ok());
  EXPECT_EQ(AddressAt(*IpPrefix::Parse("fd00:1::/64"), 258).ToString(), "fd00:1::102");
  EXPECT_EQ(AddressAt(*IpPrefix::Parse("10.1.0.0/16"), 258).ToString(), "10.1.1.2");
}

}  // namespace
}  // namespace diyc::server
