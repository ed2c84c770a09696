#include "diyc/netcore/ping.h"

#include "diyc/netcore/addr.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/route.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using testing::TempNetnsTest;

// a and b joined by a veth pair made from inside a, the peer created in b.
class PingTest : public TempNetnsTest {
 protected:
  void SetUp() override {
    TempNetnsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto in_a = NlSocket::OpenIn(a_);
    auto in_b = NlSocket::OpenIn(b_);
    ASSERT_TRUE(in_a.ok() && in_b.ok());
    auto va = CreateVeth(*in_a, {.name = "eth0", .peer_name = "eth0", .peer_netns = &b_, .up = true});
    ASSERT_TRUE(va.ok()) << va.status();
    auto vb = GetLink(*in_b, std::string("eth0"));
    ASSERT_TRUE(vb.ok());
    ASSERT_TRUE(SetLinkUp(*in_b, vb->index, true).ok());
    ASSERT_TRUE(BringLoopbackUp(*in_a).ok());
    ASSERT_TRUE(AddAddress(*in_a, va->index, *IpPrefix::Parse("10.94.0.1/24")).ok());
    ASSERT_TRUE(AddAddress(*in_b, vb->index, *IpPrefix::Parse("10.94.0.2/24")).ok());
    ASSERT_TRUE(AddAddress(*in_a, va->index, *IpPrefix::Parse("fd00:94::1/64"), {.no_dad = true}).ok());
    ASSERT_TRUE(AddAddress(*in_b, vb->index, *IpPrefix::Parse("fd00:94::2/64"), {.no_dad = true}).ok());
  }
};

TEST_F(PingTest, ReachesPeerOverV4AndV6) {
  auto v4 = Ping(&a_, *IpAddress::Parse("10.94.0.2"), {.count = 3});
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->sent, 3);
  EXPECT_EQ(v4->received, 3);
  EXPECT_EQ(v4->rtts_ms.size(), 3u);
  // The first IPv6 echo may go before neighbour discovery settles on a
  // fresh link; once one is answered every one must be.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto warm = Ping(&b_, *IpAddress::Parse("fd00:94::1"), {.count = 1});
    if (warm.ok() && warm->received == 1) break;
  }
  auto v6 = Ping(&b_, *IpAddress::Parse("fd00:94::1"), {.count = 2});
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->received, 2);
  auto self = Ping(&a_, *IpAddress::Parse("127.0.0.1"), {.count = 1});
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self->received, 1);
}

TEST_F(PingTest, UnreachableIsAResultNotAnError) {
  // Same subnet, nobody there: ARP fails, no reply.
  auto silent = Ping(&a_, *IpAddress::Parse("10.94.0.77"), {.count = 1, .timeout = absl::Milliseconds(300)});
  ASSERT_TRUE(silent.ok()) << silent.status();
  EXPECT_EQ(silent->sent, 1);
  EXPECT_EQ(silent->received, 0);
  // No route at all.
  auto no_route = Ping(&a_, *IpAddress::Parse("10.200.0.1"), {.count = 1, .timeout = absl::Milliseconds(100)});
  ASSERT_TRUE(no_route.ok()) << no_route.status();
  EXPECT_EQ(no_route->received, 0);
}

}  // namespace
}  // namespace diyc::netcore
