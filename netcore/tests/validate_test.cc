#include "diyc/netcore/validate.h"

#include <string>
#include <vector>

#include "diyc/netcore/link.h"
#include "gtest/gtest.h"

namespace diyc::netcore {
namespace {

class BadIfName : public testing::TestWithParam<std::string> {};
TEST_P(BadIfName, Rejected) {
  absl::Status status = ValidateIfName(GetParam());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << GetParam();
}
INSTANTIATE_TEST_SUITE_P(Names, BadIfName,
                         testing::Values("", "sixteen-chars-xx", "a/b", "a b", "a:b", "tab\tx", ".", "..", "all",
                                         "default", std::string("a\0b", 3), "new\nline"));

TEST(IfName, AcceptsKernelNames) {
  for (const char* name : {"eth0", "diyc0", "a", "fifteen-chars-x", "veth.100", "br-1_x"}) {
    EXPECT_TRUE(ValidateIfName(name).ok()) << name;
  }
}

TEST(NetnsName, RejectsTraversal) {
  for (const std::string& name : std::vector<std::string>{"", ".", "..", "a/b", "../etc", "a b", std::string("a\0b", 3), std::string(256, 'x')}) {
    EXPECT_EQ(ValidateNetnsName(name).code(), absl::StatusCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(ValidateNetnsName("test-ns_1.a").ok());
}

TEST(SysctlKey, RejectsEscapes) {
  EXPECT_TRUE(ValidateSysctlKey("net.ipv4.ip_forward").ok());
  EXPECT_TRUE(ValidateSysctlKey("net/ipv4/conf/eth0.5/rp_filter").ok());
  for (const char* key : {"", "net..ipv4", "net/../../etc/passwd", "net/ipv4/", "net.ipv4.ip forward", "a*b"}) {
    EXPECT_EQ(ValidateSysctlKey(key).code(), absl::StatusCode::kInvalidArgument) << key;
  }
}

TEST(Mac, Strict) {
  EXPECT_TRUE(ValidateMac("02:42:ac:11:00:02").ok());
  EXPECT_TRUE(ValidateMac("02:42:AC:11:00:02").ok());
  for (const char* mac : {"", "02:42:ac:11:00", "02-42-ac-11-00-02", "02:42:ac:11:00:0g", "02:42:ac:11:00:02:"}) {
    EXPECT_EQ(ValidateMac(mac).code(), absl::StatusCode::kInvalidArgument) << mac;
  }
}

}  // namespace
}  // namespace diyc::netcore
