// diyc's nftables table as data: the one model from which Apply's script is
// rendered and against which Check compares the kernel's listing, so the two
// cannot disagree about what the ruleset is.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "diyc/netcore/firewall.h"

namespace diyc::netcore::nft {

// The named set of every diyc bridge. It lets one rule per network say "any
// other diyc bridge" instead of one rule per pair of networks (n² rules that
// would all change whenever a network comes or goes).
inline constexpr char kBridgeSet[] = "bridges";
inline constexpr char kBridgeSetType[] = "ifname";

struct ChainSpec {
  const char* name;
  // As `nft list` prints it (and as it is written): type, hook, priority, policy.
  const char* declaration;
  // Made only while it has rules (the input chain exists for spanning networks).
  bool only_with_rules = false;
};
// Policy accept on all: diyc must not change the fate of traffic that is not
// its own.
inline constexpr ChainSpec kChains[] = {
    {"forward", "type filter hook forward priority filter; policy accept;"},
    {"postrouting", "type nat hook postrouting priority srcnat; policy accept;"},
    {"input", "type filter hook input priority filter; policy accept;", true},
};

// "vxlan_peers_4789": the addresses VXLAN traffic to one UDP port may come from.
std::string PeerSetName(uint16_t port);

struct Rule {
  std::string chain;
  // Exactly as `nft list` prints the rule, comment included, so the drift
  // check compares text with text.
  std::string text;
  // What the rule is for, for drift lines: "masquerade for 10.1.0.0/24
  // (network 'a')".
  std::string description;
};

// An element of a named set and the network it is there for.
struct SetElement {
  std::string value;
  std::string network;
};

// The peers of every spanning network on one VXLAN port.
struct PeerSet {
  uint16_t port = 0;
  std::vector<SetElement> peers;  // (address, network), sorted, unique addresses
};

struct Ruleset {
  std::vector<SetElement> bridges;  // elements of kBridgeSet
  std::vector<PeerSet> peer_sets;      // by port
  std::vector<Rule> rules;             // in chain order, networks sorted by name
};

// The ruleset for validated networks.
Ruleset BuildRuleset(const std::vector<FirewallNetwork>& networks);

// "diyc:net:NAME", the comment on every rule of a network.
std::string NetworkComment(absl::string_view network);

}  // namespace diyc::netcore::nft
