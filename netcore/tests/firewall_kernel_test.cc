// The nftables firewall against the real kernel. Everything happens inside
// fresh network namespaces (nftables state is per namespace), so the host's
// ruleset is never touched; the namespaces take their tables with them.
#include <nftables/libnftables.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/ping.h"
#include "diyc/netcore/route.h"
#include "diyc/netcore/sysctl.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "netcore/testing/temp_netns.h"

namespace diyc::netcore {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::TempNetnsTest;
using testing::UniqueName;

// Runs nft commands through a libnftables context of the test's own, made on
// a thread inside ns (nullptr: the calling thread's namespace): changes
// "behind the firewall's back".
absl::StatusOr<std::string> RunNft(const Netns* ns, const std::string& commands) {
  auto run = [&]() -> absl::StatusOr<std::string> {
    std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
    if (ctx == nullptr) return absl::InternalError("nft_ctx_new failed");
    nft_ctx_buffer_output(ctx.get());
    nft_ctx_buffer_error(ctx.get());
    if (nft_run_cmd_from_buffer(ctx.get(), commands.c_str()) != 0) {
      return absl::InternalError(absl::StrCat(commands, ": ", nft_ctx_get_error_buffer(ctx.get())));
    }
    return std::string(nft_ctx_get_output_buffer(ctx.get()));
  };
  if (ns == nullptr) return run();
  return RunInNetnsFor<std::string>(*ns, run);
}

std::vector<std::string> Tables(const Netns* ns) {
  auto listing = RunNft(ns, "list tables");
  EXPECT_TRUE(listing.ok()) << listing.status();
  std::vector<std::string> tables;
  if (!listing.ok()) return tables;
  for (absl::string_view line : absl::StrSplit(*listing, '\n', absl::SkipWhitespace())) {
    tables.emplace_back(absl::StripAsciiWhitespace(line));
  }
  return tables;
}

int Count(absl::string_view text, absl::string_view needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != absl::string_view::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

FirewallNetwork Net(std::string name, std::string bridge, absl::string_view subnet, bool internal = false) {
  FirewallNetwork network;
  network.name = std::move(name);
  network.bridge = std::move(bridge);
  network.subnet = *IpPrefix::Parse(subnet);
  network.internal = internal;
  return network;
}

// The firewall lives in a_; b_ is spare for the packet test.
class FirewallKernelTest : public TempNetnsTest {
 protected:
  void SetUp() override {
    TempNetnsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    table_ = UniqueName("dfw");
    firewall_ = MakeNftablesFirewall(table_, &a_);
  }

  std::string Listing() {
    auto listing = RunNft(&a_, absl::StrCat("list table inet ", table_));
    EXPECT_TRUE(listing.ok()) << listing.status();
    return listing.ok() ? *listing : "";
  }

  std::vector<std::string> Check(const std::vector<FirewallNetwork>& networks) {
    auto drift = firewall_->Check(networks);
    EXPECT_TRUE(drift.ok()) << drift.status();
    return drift.ok() ? *drift : std::vector<std::string>{"Check failed"};
  }

  std::string TableLine() const { return absl::StrCat("table inet ", table_); }

  std::string table_;
  std::unique_ptr<Firewall> firewall_;
};

TEST_F(FirewallKernelTest, ApplyInstallsExactlyTheRulesetAndIsIdempotent) {
  FirewallNetwork web = Net("web", "dbr-web", "10.41.1.0/24");
  web.subnet6 = *IpPrefix::Parse("fd00:41:1::/64");
  const std::vector<FirewallNetwork> networks = {web, Net("db", "dbr-db", "10.41.2.0/24", /*internal=*/true)};
  EXPECT_THAT(Check(networks), ElementsAre(absl::StrCat(TableLine(), " is missing")));

  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_THAT(Check(networks), IsEmpty());
  const std::string first = Listing();
  EXPECT_EQ(Count(first, "masquerade"), 1);
  EXPECT_EQ(Count(first, "comment \"diyc:net:web\""), 4);
  EXPECT_EQ(Count(first, "comment \"diyc:net:db\""), 2);

  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_EQ(Listing(), first);
  EXPECT_THAT(Check(networks), IsEmpty());
  EXPECT_EQ(Count(absl::StrJoin(Tables(&a_), "\n"), TableLine()), 1);
  // The host never saw any of it.
  EXPECT_THAT(Tables(nullptr), Not(Contains(TableLine())));
}

TEST_F(FirewallKernelTest, RemovingANetworkRemovesOnlyItsRules) {
  const FirewallNetwork a = Net("a", "dbr-a", "10.41.1.0/24");
  const FirewallNetwork b = Net("b", "dbr-b", "10.41.2.0/24");
  ASSERT_TRUE(firewall_->Apply({a, b}).ok());
  ASSERT_TRUE(firewall_->Apply({b}).ok());
  const std::string listing = Listing();
  EXPECT_THAT(listing, Not(HasSubstr("diyc:net:a")));
  EXPECT_THAT(listing, Not(HasSubstr("dbr-a")));
  EXPECT_EQ(Count(listing, "comment \"diyc:net:b\""), 4);
  EXPECT_THAT(Check({b}), IsEmpty());
  EXPECT_THAT(Check({a, b}), Contains("masquerade for 10.41.1.0/24 (network 'a') is missing"));
}

TEST_F(FirewallKernelTest, CheckReportsChangesMadeBehindItsBack) {
  const std::vector<FirewallNetwork> networks = {Net("a", "dbr-a", "10.41.1.0/24"),
                                                 Net("b", "dbr-b", "10.41.2.0/24", /*internal=*/true)};
  ASSERT_TRUE(firewall_->Apply(networks).ok());
  ASSERT_THAT(Check(networks), IsEmpty());

  ASSERT_TRUE(RunNft(&a_, absl::StrCat("flush table inet ", table_)).ok());
  std::vector<std::string> drift = Check(networks);
  EXPECT_THAT(drift, Contains("masquerade for 10.41.1.0/24 (network 'a') is missing"));
  EXPECT_THAT(drift, Contains("isolation of bridge 'dbr-a' from the other diyc bridges (network 'a') is missing"));
  EXPECT_THAT(drift, Contains("drop of traffic entering internal bridge 'dbr-b' (network 'b') is missing"));

  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_THAT(Check(networks), IsEmpty());

  ASSERT_TRUE(RunNft(&a_, absl::StrCat("add rule inet ", table_, " forward tcp dport 22 accept\n",
                                       "add element inet ", table_, " bridges { \"eth9\" }"))
                  .ok());
  EXPECT_THAT(Check(networks), ElementsAre("set bridges has unexpected element 'eth9'",
                                           "unexpected rule in chain forward: 'tcp dport 22 accept'"));

  ASSERT_TRUE(RunNft(&a_, absl::StrCat("delete table inet ", table_)).ok());
  EXPECT_THAT(Check(networks), ElementsAre(absl::StrCat(TableLine(), " is missing")));
  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_THAT(Check(networks), IsEmpty());
}

TEST_F(FirewallKernelTest, VxlanPortsAcceptOnlyPeers) {
  FirewallNetwork span = Net("span", "dbr-span", "10.41.3.0/24");
  span.vxlan_port = 4789;
  span.vxlan_peers = {*IpAddress::Parse("192.0.2.12"), *IpAddress::Parse("192.0.2.11")};
  FirewallNetwork lonely = Net("lonely", "dbr-lonely", "10.41.4.0/24");
  lonely.vxlan_port = 4790;  // no peers yet: everything to its port is dropped
  FirewallNetwork span2 = Net("span2", "dbr-span2", "10.41.5.0/24");
  span2.vxlan_port = 4789;
  span2.vxlan_peers = {*IpAddress::Parse("192.0.2.11"), *IpAddress::Parse("192.0.2.13")};
  const std::vector<FirewallNetwork> networks = {span, lonely, span2, Net("plain", "dbr-plain", "10.41.6.0/24")};
  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_THAT(Check(networks), IsEmpty()) << Listing();
  const std::string listing = Listing();
  EXPECT_EQ(Count(listing, "udp dport 4789 ip saddr != @vxlan_peers_4789 drop"), 1);
  EXPECT_EQ(Count(listing, "udp dport 4790 ip saddr != @vxlan_peers_4790 drop"), 1);
  EXPECT_EQ(Count(listing, "chain input"), 1);

  // A peer taken out behind diyc's back, and one added.
  ASSERT_TRUE(RunNft(&a_, absl::StrCat("delete element inet ", table_, " vxlan_peers_4789 { 192.0.2.12 }\n",
                                       "add element inet ", table_, " vxlan_peers_4790 { 198.51.100.1 }"))
                  .ok());
  EXPECT_THAT(Check(networks), ElementsAre("VXLAN peer '192.0.2.12' (network 'span') is missing from set vxlan_peers_4789",
                                           "set vxlan_peers_4790 has unexpected element '198.51.100.1'"));
  ASSERT_TRUE(firewall_->Apply(networks).ok());
  EXPECT_THAT(Check(networks), IsEmpty());

  // Without spanning networks the input chain and the sets go.
  ASSERT_TRUE(firewall_->Apply({Net("plain", "dbr-plain", "10.41.6.0/24")}).ok());
  EXPECT_THAT(Listing(), Not(HasSubstr("chain input")));
  EXPECT_THAT(Listing(), Not(HasSubstr("vxlan_peers")));
  EXPECT_THAT(Check({Net("plain", "dbr-plain", "10.41.6.0/24")}), IsEmpty());
}

TEST_F(FirewallKernelTest, EmptyApplyRemovesTheTableAndNothingElse) {
  const std::string other = absl::StrCat(table_, "_other");
  ASSERT_TRUE(RunNft(&a_, absl::StrCat("add table inet ", other, "\nadd chain inet ", other, " c")).ok());
  // Absent already: still fine.
  ASSERT_TRUE(firewall_->Apply({}).ok());
  EXPECT_THAT(Check({}), IsEmpty());

  ASSERT_TRUE(firewall_->Apply({Net("a", "dbr-a", "10.41.1.0/24")}).ok());
  EXPECT_THAT(Check({}), ElementsAre(absl::StrCat(TableLine(), " exists although there are no diyc networks")));
  ASSERT_TRUE(firewall_->Apply({}).ok());
  EXPECT_THAT(Tables(&a_), ElementsAre(absl::StrCat("table inet ", other)));
  EXPECT_THAT(Check({}), IsEmpty());
  ASSERT_TRUE(firewall_->Apply({}).ok());
}

TEST_F(FirewallKernelTest, InvalidNetworksLeaveTheKernelAlone) {
  const FirewallNetwork a = Net("a", "dbr-a", "10.41.1.0/24");
  ASSERT_TRUE(firewall_->Apply({a}).ok());
  const std::string before = Listing();
  EXPECT_EQ(firewall_->Apply({a, Net("x;flush ruleset", "dbr-x", "10.41.3.0/24")}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(firewall_->Apply({a, Net("x", "dbr\"x", "10.41.3.0/24")}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Listing(), before);
}

TEST_F(FirewallKernelTest, ReportsNftablesErrors) {
  // A valid name that nft's grammar reserves: the script is refused.
  auto keyword = MakeNftablesFirewall("counter", &a_);
  absl::Status status = keyword->Apply({Net("a", "dbr-a", "10.41.1.0/24")});
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("apply nftables ruleset in netns '", a_name_,
                                                       "': Error: syntax error, unexpected counter")));
  EXPECT_THAT(status.message(), Not(HasSubstr("\n")));
  EXPECT_THAT(Tables(&a_), IsEmpty());
}

// A namespace of the test's own beyond a_ and b_, removed even on failure.
struct ExtraNetns {
  explicit ExtraNetns(absl::string_view prefix) : name(UniqueName(prefix)) {
    auto created = Netns::Create(name);
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) ns = *std::move(created);
  }
  ~ExtraNetns() {
    if (ns.valid()) (void)Netns::Remove(name);
  }
  std::string name;
  Netns ns;
};

// a_ routes between two bridges and an uplink:
//   b_ (10.41.1.2) and d (10.41.1.3) on dbr-a (10.41.1.1/24, network "a"),
//   c (10.41.2.2) on dbr-b (10.41.2.1/24, network "b"),
//   e (10.41.9.2) behind up0 (10.41.9.1/24), with no route back to the
//   networks: only masquerading lets it answer them.
class FirewallPacketTest : public FirewallKernelTest {
 protected:
  void SetUp() override {
    FirewallKernelTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    c_ = std::make_unique<ExtraNetns>("dcc");
    d_ = std::make_unique<ExtraNetns>("dcd");
    e_ = std::make_unique<ExtraNetns>("dce");
    ASSERT_TRUE(c_->ns.valid() && d_->ns.valid() && e_->ns.valid());

    auto router = NlSocket::OpenIn(a_);
    ASSERT_TRUE(router.ok()) << router.status();
    ASSERT_TRUE(BringLoopbackUp(*router).ok());
    ASSERT_TRUE(WriteSysctl(&a_, "net.ipv4.ip_forward", "1").ok());
    auto bridge_a = CreateBridge(*router, {.name = "dbr-a"});
    auto bridge_b = CreateBridge(*router, {.name = "dbr-b"});
    ASSERT_TRUE(bridge_a.ok() && bridge_b.ok()) << bridge_a.status() << bridge_b.status();
    ASSERT_TRUE(AddAddress(*router, bridge_a->index, *IpPrefix::Parse("10.41.1.1/24")).ok());
    ASSERT_TRUE(AddAddress(*router, bridge_b->index, *IpPrefix::Parse("10.41.2.1/24")).ok());
    Attach(*router, "va-b", bridge_a->index, b_, "10.41.1.2/24", "10.41.1.1");
    Attach(*router, "va-d", bridge_a->index, d_->ns, "10.41.1.3/24", "10.41.1.1");
    Attach(*router, "vb-c", bridge_b->index, c_->ns, "10.41.2.2/24", "10.41.2.1");
    Attach(*router, "up0", 0, e_->ns, "10.41.9.2/24", std::nullopt);
    auto uplink = GetLink(*router, std::string("up0"));
    ASSERT_TRUE(uplink.ok());
    ASSERT_TRUE(AddAddress(*router, uplink->index, *IpPrefix::Parse("10.41.9.1/24")).ok());
  }

  void TearDown() override {
    e_.reset();
    d_.reset();
    c_.reset();
    FirewallKernelTest::TearDown();
  }

  // A veth from the router (on `bridge`, or unbridged for 0) to eth0 in member.
  void Attach(NlSocket& router, const std::string& name, int bridge, const Netns& member, absl::string_view address,
              std::optional<absl::string_view> gateway) {
    auto veth = CreateVeth(router, {.name = name, .peer_name = "eth0", .peer_netns = &member,
                                    .master_index = bridge, .up = true});
    ASSERT_TRUE(veth.ok()) << veth.status();
    auto in = NlSocket::OpenIn(member);
    ASSERT_TRUE(in.ok()) << in.status();
    auto eth0 = GetLink(*in, std::string("eth0"));
    ASSERT_TRUE(eth0.ok()) << eth0.status();
    ASSERT_TRUE(SetLinkUp(*in, eth0->index, true).ok());
    ASSERT_TRUE(BringLoopbackUp(*in).ok());
    ASSERT_TRUE(AddAddress(*in, eth0->index, *IpPrefix::Parse(address)).ok());
    if (gateway) {
      ASSERT_TRUE(AddRoute(*in, {.dst = DefaultRoute(IpFamily::kV4), .gateway = *IpAddress::Parse(*gateway)}).ok());
    }
  }

  // Echo replies from two requests.
  static int Flows(const Netns& from, absl::string_view to) {
    auto result = Ping(&from, *IpAddress::Parse(to), {.count = 2, .timeout = absl::Seconds(1)});
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->received : -1;
  }
  // Echo replies from one request, waiting briefly: for paths that should be dropped.
  static int Leaks(const Netns& from, absl::string_view to) {
    auto result = Ping(&from, *IpAddress::Parse(to), {.count = 1, .timeout = absl::Milliseconds(300)});
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->received : -1;
  }

  std::unique_ptr<ExtraNetns> c_, d_, e_;
};

TEST_F(FirewallPacketTest, IsolatesNetworksMasqueradesAndLetsGo) {
  const Netns& b = b_;
  const Netns& c = c_->ns;
  const Netns& d = d_->ns;
  // Plain routing first: everything between the networks flows.
  EXPECT_EQ(Flows(b, "10.41.2.2"), 2);
  EXPECT_EQ(Flows(c, "10.41.1.2"), 2);
  EXPECT_EQ(Flows(b, "10.41.1.3"), 2);
  EXPECT_EQ(Leaks(b, "10.41.9.2"), 0) << "e answered without masquerading";

  const FirewallNetwork a_net = Net("a", "dbr-a", "10.41.1.0/24");
  const FirewallNetwork b_net = Net("b", "dbr-b", "10.41.2.0/24");
  ASSERT_TRUE(firewall_->Apply({a_net, b_net}).ok());
  EXPECT_EQ(Leaks(b, "10.41.2.2"), 0) << "network a reached network b";
  EXPECT_EQ(Leaks(c, "10.41.1.2"), 0) << "network b reached network a";
  EXPECT_EQ(Flows(b, "10.41.1.3"), 2) << "within network a";
  EXPECT_EQ(Flows(b, "10.41.1.1"), 2) << "to the gateway";
  // e has no route back: its answers arrive only because they were masqueraded.
  EXPECT_EQ(Flows(b, "10.41.9.2"), 2) << "out of network a";
  EXPECT_EQ(Flows(c, "10.41.9.2"), 2) << "out of network b";

  const FirewallNetwork a_internal = Net("a", "dbr-a", "10.41.1.0/24", /*internal=*/true);
  ASSERT_TRUE(firewall_->Apply({a_internal, b_net}).ok());
  EXPECT_THAT(Check({a_internal, b_net}), IsEmpty());
  EXPECT_EQ(Leaks(b, "10.41.9.2"), 0) << "left internal network a";
  EXPECT_EQ(Leaks(c, "10.41.1.2"), 0) << "entered internal network a";
  EXPECT_EQ(Flows(b, "10.41.1.3"), 2) << "within internal network a";
  EXPECT_EQ(Flows(c, "10.41.9.2"), 2) << "out of network b";

  ASSERT_TRUE(firewall_->Apply({}).ok());
  EXPECT_THAT(Tables(&a_), Not(Contains(TableLine())));
  EXPECT_EQ(Flows(b, "10.41.2.2"), 2) << "after the table was removed";
  EXPECT_EQ(Flows(c, "10.41.1.2"), 2) << "after the table was removed";
  EXPECT_EQ(Flows(d, "10.41.1.2"), 2) << "within network a";
  EXPECT_EQ(Leaks(b, "10.41.9.2"), 0) << "still masqueraded";
}

}  // namespace
}  // namespace diyc::netcore
