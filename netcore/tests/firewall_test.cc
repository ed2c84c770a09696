// The firewall's pure parts: validation, the rendered script and the drift
// check over listings. No kernel, no root.
#include "diyc/netcore/firewall.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace diyc::netcore {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

FirewallNetwork Net(std::string name, std::string bridge, absl::string_view subnet) {
  FirewallNetwork network;
  network.name = std::move(name);
  network.bridge = std::move(bridge);
  network.subnet = *IpPrefix::Parse(subnet);
  return network;
}

int Count(absl::string_view text, absl::string_view needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != absl::string_view::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// nat, no-nat, internal (which also asks for nat, and must not get it) and dual stack.
std::vector<FirewallNetwork> ThreeNetworks() {
  FirewallNetwork web = Net("web", "dbr-web", "10.1.0.0/24");
  web.subnet6 = *IpPrefix::Parse("fd00:1::/64");
  FirewallNetwork plain = Net("plain", "dbr-plain", "10.2.0.0/24");
  plain.nat = false;
  FirewallNetwork db = Net("db", "dbr-db", "10.3.0.0/24");
  db.internal = true;
  return {web, plain, db};
}

// What `nft list table` prints for RenderNftRuleset(table, networks): the
// script minus its first two commands, indented and wrapped the way nft does.
std::string ListingOf(absl::string_view table, const std::vector<FirewallNetwork>& networks) {
  std::string script = RenderNftRuleset(table, networks);
  const std::string head = absl::StrCat("add table inet ", table, "\ndelete table inet ", table, "\n");
  EXPECT_TRUE(absl::StartsWith(script, head));
  script = script.substr(head.size());
  // nft puts each set element on its own line and blank lines between objects.
  return absl::StrReplaceAll(script, {{"\", \"", "\",\n\t\t\t     \""}, {"\t}\n\tchain", "\t}\n\n\tchain"}});
}

TEST(RenderNftRuleset, NoNetworksOnlyDeletesTheTable) {
  EXPECT_EQ(RenderNftRuleset("diyc", {}), "add table inet diyc\ndelete table inet diyc\n");
}

TEST(RenderNftRuleset, OneNatNetwork) {
  const std::string script = RenderNftRuleset("diyc", {Net("a", "dbr-a", "10.1.0.0/24")});
  EXPECT_EQ(script,
            "add table inet diyc\n"
            "delete table inet diyc\n"
            "table inet diyc {\n"
            "\tset bridges {\n"
            "\t\ttype ifname\n"
            "\t\telements = { \"dbr-a\" }\n"
            "\t}\n"
            "\tchain forward {\n"
            "\t\ttype filter hook forward priority filter; policy accept;\n"
            "\t\tiifname \"dbr-a\" oifname @bridges oifname != \"dbr-a\" drop comment \"diyc:net:a\"\n"
            "\t\tiifname \"dbr-a\" oifname != @bridges accept comment \"diyc:net:a\"\n"
            "\t\tiifname != @bridges oifname \"dbr-a\" ct state established,related accept comment \"diyc:net:a\"\n"
            "\t}\n"
            "\tchain postrouting {\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            "\t\tip saddr 10.1.0.0/24 oifname != \"dbr-a\" masquerade comment \"diyc:net:a\"\n"
            "\t}\n"
            "}\n");
}

TEST(RenderNftRuleset, ThreeNetworks) {
  const std::string script = RenderNftRuleset("diyc", ThreeNetworks());
  EXPECT_EQ(Count(script, "table inet diyc {"), 1);
  EXPECT_EQ(Count(script, "add table"), 1);
  EXPECT_EQ(Count(script, "delete table"), 1);
  EXPECT_EQ(Count(script, "chain forward {"), 1);
  EXPECT_EQ(Count(script, "chain postrouting {"), 1);
  // Only "web" is masqueraded: "plain" asked for no NAT, "db" is internal.
  EXPECT_EQ(Count(script, "masquerade"), 1);
  EXPECT_THAT(script, HasSubstr("ip saddr 10.1.0.0/24 oifname != \"dbr-web\" masquerade comment \"diyc:net:web\""));
  // IPv6 is routed, never masqueraded.
  EXPECT_THAT(script, Not(HasSubstr("ip6")));
  EXPECT_THAT(script, Not(HasSubstr("fd00")));
  // All bridges in the set, sorted by network name.
  EXPECT_THAT(script, HasSubstr("elements = { \"dbr-db\", \"dbr-plain\", \"dbr-web\" }"));
  // Internal: dropped both ways, no accept at all.
  EXPECT_THAT(script, HasSubstr("iifname \"dbr-db\" oifname != \"dbr-db\" drop comment \"diyc:net:db\""));
  EXPECT_THAT(script, HasSubstr("iifname != \"dbr-db\" oifname \"dbr-db\" drop comment \"diyc:net:db\""));
  EXPECT_EQ(Count(script, "accept comment \"diyc:net:db\""), 0);
  // No NAT still means isolated, with traffic out and replies in accepted.
  EXPECT_EQ(Count(script, "comment \"diyc:net:plain\""), 3);
  EXPECT_THAT(script, HasSubstr("iifname \"dbr-plain\" oifname @bridges oifname != \"dbr-plain\" drop"));
  // Every rule names its network.
  for (absl::string_view line : absl::StrSplit(script, '\n')) {
    if (absl::EndsWith(line, "drop") || absl::EndsWith(line, "accept") || absl::EndsWith(line, "masquerade")) {
      ADD_FAILURE() << "rule without comment: " << line;
    }
    if (absl::StrContains(line, "iifname") || absl::StrContains(line, "masquerade")) {
      EXPECT_THAT(line, HasSubstr("comment \"diyc:net:")) << line;
    }
  }
}

TEST(RenderNftRuleset, InputOrderDoesNotMatter) {
  std::vector<FirewallNetwork> networks = ThreeNetworks();
  const std::string forward = RenderNftRuleset("t", networks);
  std::reverse(networks.begin(), networks.end());
  EXPECT_EQ(RenderNftRuleset("t", networks), forward);
}

TEST(ValidateFirewallNetwork, AcceptsGoodNetworks) {
  for (const FirewallNetwork& network : ThreeNetworks()) {
    EXPECT_TRUE(ValidateFirewallNetwork(network).ok()) << network.name;
  }
  EXPECT_TRUE(ValidateFirewallNetwork(Net(std::string(63, 'n'), "br_0.x-y", "192.168.0.0/16")).ok());
  EXPECT_TRUE(ValidateFirewallNetworks(ThreeNetworks()).ok());
  EXPECT_TRUE(ValidateFirewallNetworks({}).ok());
}

TEST(ValidateFirewallNetwork, RefusesNamesThatCouldInjectSyntax) {
  for (const std::string& name :
       std::vector<std::string>{"", "a\"b", "a b", "a;b", "a}b", "a\nb", std::string("a\0b", 3), "-a", ".a", "_a",
                                std::string(64, 'n'), "a/b", "a*", "a$b", "é"}) {
    absl::Status status = ValidateFirewallNetwork(Net(name, "dbr0", "10.0.0.0/24"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(status.message(), HasSubstr("network name")) << name;
  }
}

TEST(ValidateFirewallNetwork, RefusesBadBridges) {
  for (const std::string& bridge :
       std::vector<std::string>{"", "br\"0", "br 0", "br;0", "br*", "sixteen-chars-xx", "a/b", "a:b", ".", "..", "all",
                                "default", "br{0}", "br\\0", "br$x", std::string("b\0r", 3)}) {
    absl::Status status = ValidateFirewallNetwork(Net("n", bridge, "10.0.0.0/24"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bridge;
    EXPECT_THAT(status.message(), HasSubstr("network 'n' bridge")) << bridge;
  }
}

TEST(ValidateFirewallNetwork, RefusesBadPrefixes) {
  EXPECT_EQ(ValidateFirewallNetwork(Net("n", "b", "10.0.0.5/24")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateFirewallNetwork(Net("n", "b", "0.0.0.0/0")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateFirewallNetwork(Net("n", "b", "fd00::/64")).code(), absl::StatusCode::kInvalidArgument);
  FirewallNetwork unset;
  unset.name = "n";
  unset.bridge = "b";
  EXPECT_EQ(ValidateFirewallNetwork(unset).code(), absl::StatusCode::kInvalidArgument);

  FirewallNetwork dual = Net("n", "b", "10.0.0.0/24");
  dual.subnet6 = *IpPrefix::Parse("10.1.0.0/24");
  EXPECT_THAT(ValidateFirewallNetwork(dual).message(), HasSubstr("not an IPv6 prefix"));
  dual.subnet6 = *IpPrefix::Parse("fd00::1/64");
  EXPECT_THAT(ValidateFirewallNetwork(dual).message(), HasSubstr("host bits set"));
  dual.subnet6 = *IpPrefix::Parse("fd00::/64");
  EXPECT_TRUE(ValidateFirewallNetwork(dual).ok());
}

TEST(ValidateFirewallNetworks, RefusesDuplicates) {
  absl::Status same_name =
      ValidateFirewallNetworks({Net("a", "dbr-a", "10.1.0.0/24"), Net("a", "dbr-b", "10.2.0.0/24")});
  EXPECT_EQ(same_name.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(same_name.message(), HasSubstr("listed twice"));
  absl::Status same_bridge =
      ValidateFirewallNetworks({Net("a", "dbr-a", "10.1.0.0/24"), Net("b", "dbr-a", "10.2.0.0/24")});
  EXPECT_EQ(same_bridge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(same_bridge.message(), HasSubstr("another network"));
}

TEST(ValidateNftTableName, AllowsOnlyPlainIdentifiers) {
  EXPECT_TRUE(ValidateNftTableName("diyc").ok());
  EXPECT_TRUE(ValidateNftTableName("diyc_test_12").ok());
  for (absl::string_view bad : {"", "1diyc", "di yc", "diyc;flush", "di\"yc", "di-yc", "a.b",
                                "abcdefghijklmnopqrstuvwxyz0123456"}) {
    EXPECT_EQ(ValidateNftTableName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// Refused before any kernel access, so this needs no root.
TEST(NftablesFirewall, RefusesBadInputBeforeTouchingTheKernel) {
  auto bad_table = MakeNftablesFirewall("bad table");
  EXPECT_EQ(bad_table->Apply({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_table->Check({}).status().code(), absl::StatusCode::kInvalidArgument);
  auto firewall = MakeNftablesFirewall("diyc_unit");
  EXPECT_EQ(firewall->Apply({Net("a\"", "dbr-a", "10.1.0.0/24")}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(firewall->Check({Net("a", "dbr a", "10.1.0.0/24")}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DiffNftTable, AbsentTable) {
  EXPECT_THAT(DiffNftTable("diyc", {}, std::nullopt), IsEmpty());
  EXPECT_THAT(DiffNftTable("diyc", ThreeNetworks(), std::nullopt), ElementsAre("table inet diyc is missing"));
  EXPECT_THAT(DiffNftTable("diyc", {}, ListingOf("diyc", ThreeNetworks())),
              ElementsAre("table inet diyc exists although there are no diyc networks"));
}

TEST(DiffNftTable, ListingOfTheRenderedRulesetIsInSync) {
  EXPECT_THAT(DiffNftTable("diyc", ThreeNetworks(), ListingOf("diyc", ThreeNetworks())), IsEmpty());
}

// As nft 1.0.6 listed a ruleset applied by the kernel test.
TEST(DiffNftTable, RealListingIsInSync) {
  const std::string listing =
      "table inet t1 {\n"
      "\tset bridges {\n"
      "\t\ttype ifname\n"
      "\t\telements = { \"dbr-a\",\n"
      "\t\t\t     \"dbr-c\" }\n"
      "\t}\n"
      "\n"
      "\tchain forward {\n"
      "\t\ttype filter hook forward priority filter; policy accept;\n"
      "\t\tiifname \"dbr-a\" oifname @bridges oifname != \"dbr-a\" drop comment \"diyc:net:a\"\n"
      "\t\tiifname \"dbr-a\" oifname != @bridges accept comment \"diyc:net:a\"\n"
      "\t\tiifname != @bridges oifname \"dbr-a\" ct state established,related accept comment \"diyc:net:a\"\n"
      "\t\tiifname \"dbr-c\" oifname != \"dbr-c\" drop comment \"diyc:net:c\"\n"
      "\t\tiifname != \"dbr-c\" oifname \"dbr-c\" drop comment \"diyc:net:c\"\n"
      "\t}\n"
      "\n"
      "\tchain postrouting {\n"
      "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
      "\t\tip saddr 10.1.0.0/24 oifname != \"dbr-a\" masquerade comment \"diyc:net:a\"\n"
      "\t}\n"
      "}\n";
  FirewallNetwork c = Net("c", "dbr-c", "10.3.0.0/24");
  c.internal = true;
  EXPECT_THAT(DiffNftTable("t1", {Net("a", "dbr-a", "10.1.0.0/24"), c}, listing), IsEmpty());
}

TEST(DiffNftTable, ReportsMissingPiecesByNetwork) {
  const std::vector<FirewallNetwork> networks = ThreeNetworks();
  std::string listing = ListingOf("diyc", networks);
  listing = absl::StrReplaceAll(
      listing, {{"\t\tip saddr 10.1.0.0/24 oifname != \"dbr-web\" masquerade comment \"diyc:net:web\"\n", ""},
                {"\"dbr-plain\",\n\t\t\t     ", ""}});
  EXPECT_THAT(DiffNftTable("diyc", networks, listing),
              ElementsAre("bridge 'dbr-plain' (network 'plain') is missing from set bridges",
                          "masquerade for 10.1.0.0/24 (network 'web') is missing"));
}

TEST(DiffNftTable, ReportsFlushedTable) {
  const std::string flushed =
      "table inet diyc {\n\tset bridges {\n\t\ttype ifname\n\t}\n\n\tchain forward {\n"
      "\t\ttype filter hook forward priority filter; policy accept;\n\t}\n\n\tchain postrouting {\n"
      "\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n";
  const std::vector<std::string> drift = DiffNftTable("diyc", ThreeNetworks(), flushed);
  EXPECT_EQ(drift.size(), 3u /* set elements */ + 2u /* db */ + 3u /* plain */ + 3u /* web */ + 1u /* nat */);
  EXPECT_THAT(drift, Contains("isolation of bridge 'dbr-web' from the other diyc bridges (network 'web') is missing"));
  EXPECT_THAT(drift, Contains("drop of traffic entering internal bridge 'dbr-db' (network 'db') is missing"));
  EXPECT_THAT(drift, Contains("accept of replies into bridge 'dbr-plain' (network 'plain') is missing"));
}

TEST(DiffNftTable, ReportsExtraDuplicateAndChangedPieces) {
  const std::vector<FirewallNetwork> networks = {Net("a", "dbr-a", "10.1.0.0/24")};
  std::string listing = ListingOf("diyc", networks);
  const std::string masquerade = "\t\tip saddr 10.1.0.0/24 oifname != \"dbr-a\" masquerade comment \"diyc:net:a\"\n";
  listing = absl::StrReplaceAll(
      listing,
      {{masquerade, absl::StrCat(masquerade, masquerade, "\t\ttcp dport 22 accept\n",
                                 "\t\tip saddr 10.9.0.0/24 masquerade comment \"diyc:net:old\"\n")},
       {"priority filter; policy accept;", "priority filter; policy drop;"},
       {"elements = { \"dbr-a\" }", "elements = { \"dbr-a\", \"eth0\" }"},
       {"table inet diyc {\n", "table inet diyc {\n\tflags dormant\n"}});
  listing = absl::StrReplaceAll(listing, {{"}\n}\n", "}\n\tchain extra {\n\t}\n}\n"}});
  EXPECT_THAT(
      DiffNftTable("diyc", networks, listing),
      ElementsAre("table inet diyc has unexpected 'flags dormant'", "set bridges has unexpected element 'eth0'",
                  "chain forward is declared 'type filter hook forward priority filter; policy drop;', want 'type "
                  "filter hook forward priority filter; policy accept;'",
                  "duplicate rule in chain postrouting (network 'a'): 'ip saddr 10.1.0.0/24 oifname != \"dbr-a\" "
                  "masquerade comment \"diyc:net:a\"'",
                  "unexpected rule in chain postrouting: 'tcp dport 22 accept'",
                  "unexpected rule in chain postrouting (network 'old'): 'ip saddr 10.9.0.0/24 masquerade comment "
                  "\"diyc:net:old\"'",
                  "unexpected chain 'extra' in table inet diyc"));
}

TEST(DiffNftTable, ReportsMissingObjects) {
  const std::vector<FirewallNetwork> networks = {Net("a", "dbr-a", "10.1.0.0/24")};
  EXPECT_THAT(DiffNftTable("diyc", networks, "table inet diyc {\n}\n"),
              ElementsAre("set bridges is missing", "chain forward is missing", "chain postrouting is missing"));
  EXPECT_THAT(DiffNftTable("diyc", networks, "garbage\n"),
              ElementsAre("table inet diyc is missing from its own listing"));
}

}  // namespace
}  // namespace diyc::netcore
