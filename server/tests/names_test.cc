#include "names.h"

#include <set>
#include <string>

#include "diyc/netcore/validate.h"
#include "gtest/gtest.h"

namespace diyc::server {
namespace {

TEST(Names, ObjectNames) {
  for (const char* ok : {"a", "web", "net-1.prod_x", "0abc"}) EXPECT_TRUE(ValidateObjectName("network", ok).ok()) << ok;
  for (std::string bad : {std::string(""), std::string("-a"), std::string(".a"), std::string("a/b"),
                          std::string("a b"), std::string("a:b"), std::string("a,b"), std::string(64, 'x'),
                          std::string("a\0b", 3), std::string("é")}) {
    EXPECT_EQ(ValidateObjectName("network", bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Names, KernelNamesFit) {
  EXPECT_EQ(DefaultBridgeName("web"), "diyc-web");
  std::string long_bridge = DefaultBridgeName("a-rather-long-network-name");
  EXPECT_LE(long_bridge.size(), 15u);
  EXPECT_TRUE(netcore::ValidateIfName(long_bridge).ok());
  EXPECT_NE(long_bridge, DefaultBridgeName("a-rather-long-network-name2"));
  std::set<std::string> veths;
  for (int i = 0; i < 1000; ++i) {
    std::string name = NewHostVethName();
    EXPECT_EQ(name.size(), 15u);
    EXPECT_TRUE(netcore::ValidateIfName(name).ok());
    veths.insert(name);
  }
  EXPECT_EQ(veths.size(), 1000u);
  EXPECT_EQ(OwnerAlias("abc123", "web"), "diyc:abc123:web");
  EXPECT_NE(InstanceId("/var/lib/diyc"), InstanceId("/tmp/x"));
}

}  // namespace
}  // namespace diyc::server
