#include "diyc/netcore/link.h"

#include <algorithm>

#include "diyc/netcore/errors.h"
#include "diyc/netcore/sysctl.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using testing::TempNetnsTest;

TEST_F(TempNetnsTest, BridgeAndVethWithPeerCreatedInsideNamespace) {
  const std::string br = HostLink("dcbr");
  BridgeOptions bridge_options{.name = br, .mtu = 1400};
  absl::StatusOr<LinkInfo> bridge = CreateBridge(host(), bridge_options);
  ASSERT_TRUE(bridge.ok()) << bridge.status();
  EXPECT_EQ(bridge->kind, "bridge");
  EXPECT_EQ(bridge->mtu, 1400u);
  EXPECT_TRUE(bridge->up);
  EXPECT_EQ(CreateBridge(host(), bridge_options).status().code(), absl::StatusCode::kAlreadyExists);

  const std::string veth = HostLink("dcv");
  VethOptions veth_options{.name = veth, .peer_name = "eth0", .peer_netns = &a_, .mtu = 1400,
                           .master_index = bridge->index, .up = true,
                           .peer_mac = "02:00:00:00:00:0a", .no_ipv6 = true, .alias = "diyc:test"};
  absl::StatusOr<LinkInfo> host_end = CreateVeth(host(), veth_options);
  ASSERT_TRUE(host_end.ok()) << host_end.status();
  EXPECT_EQ(host_end->kind, "veth");
  EXPECT_EQ(host_end->master_index, bridge->index);
  EXPECT_TRUE(host_end->up);
  EXPECT_EQ(host_end->alias, "diyc:test");

  absl::StatusOr<NlSocket> in_a = NlSocket::OpenIn(a_);
  ASSERT_TRUE(in_a.ok());
  absl::StatusOr<LinkInfo> peer = GetLink(*in_a, std::string("eth0"));
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->kind, "veth");
  EXPECT_EQ(peer->mac, "02:00:00:00:00:0a");
  EXPECT_EQ(peer->mtu, 1400u);
  EXPECT_FALSE(peer->up);
  ASSERT_TRUE(SetLinkUp(*in_a, peer->index, true).ok());
  EXPECT_TRUE(GetLink(*in_a, peer->index)->up);
  // The host end carries no IPv6 address even with its peer up.
  auto addrgen = ReadSysctl(nullptr, "net/ipv6/conf/" + veth + "/addr_gen_mode");
  ASSERT_TRUE(addrgen.ok()) << addrgen.status();
  EXPECT_EQ(*addrgen, "1");
  // Not in the host namespace.
  absl::StatusOr<std::optional<LinkInfo>> in_host = FindLink(host(), std::string("eth0"));
  ASSERT_TRUE(in_host.ok());
  if (in_host->has_value()) {
    EXPECT_NE((*in_host)->index, peer->index);
  }

  // A second peer with the same name in the same namespace collides there.
  const std::string veth2 = HostLink("dcv");
  VethOptions clash{.name = veth2, .peer_name = "eth0", .peer_netns = &a_};
  absl::Status status = CreateVeth(host(), clash).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_NE(status.message().find(a_name_), std::string::npos) << status;
  EXPECT_FALSE(FindLink(host(), veth2)->has_value()) << "failed create left a host link";
}

TEST_F(TempNetnsTest, ChangeLinkSetsEveryField) {
  const std::string veth = HostLink("dcv");
  const std::string renamed = HostLink("dcr");
  ASSERT_TRUE(CreateVeth(host(), {.name = veth, .peer_name = "eth0", .peer_netns = &b_}).ok());
  LinkChange change{.up = true, .mtu = 1300, .mac = "02:11:22:33:44:55", .name = renamed};
  ASSERT_TRUE(ChangeLink(host(), veth, change).ok());
  absl::StatusOr<LinkInfo> link = GetLink(host(), renamed);
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_TRUE(link->up);
  EXPECT_EQ(link->mtu, 1300u);
  EXPECT_EQ(link->mac, "02:11:22:33:44:55");
  EXPECT_EQ(GetLink(host(), veth).status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(SetLinkUp(host(), renamed, false).ok());
  EXPECT_FALSE(GetLink(host(), renamed)->up);
  // By index too.
  ASSERT_TRUE(SetLinkUp(host(), link->index, true).ok());
  EXPECT_TRUE(GetLink(host(), link->index)->up);

  absl::StatusOr<std::vector<LinkInfo>> links = ListLinks(host());
  ASSERT_TRUE(links.ok());
  EXPECT_TRUE(std::any_of(links->begin(), links->end(), [&](const LinkInfo& l) { return l.name == renamed; }));

  ASSERT_TRUE(DeleteLink(host(), renamed).ok());
  EXPECT_EQ(DeleteLink(host(), renamed).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(DeleteLinkIfExists(host(), renamed).ok());
  // Deleting one end removes the peer inside b as well.
  absl::StatusOr<NlSocket> in_b = NlSocket::OpenIn(b_);
  EXPECT_FALSE(FindLink(*in_b, std::string("eth0"))->has_value());
}

TEST_F(TempNetnsTest, BadInputIsRefusedBeforeTheKernel) {
  EXPECT_EQ(CreateBridge(host(), {.name = "sixteen-chars-xx"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateVeth(host(), {.name = "ok", .peer_name = "a/b"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateBridge(host(), {.name = HostLink("dcbr"), .mtu = 10}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChangeLink(host(), std::string("lo"), {.mac = "zz"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetLink(host(), HostLink("dcnone")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TempNetnsTest, VethIntoRemovedNamespaceFailsCleanly) {
  Netns closed = a_.Dup();
  closed.Close();
  const std::string veth = HostLink("dcv");
  absl::Status status = CreateVeth(host(), {.name = veth, .peer_name = "eth0", .peer_netns = &closed}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_FALSE(FindLink(host(), veth)->has_value());
}

}  // namespace
}  // namespace diyc::netcore
