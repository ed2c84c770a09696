// Validation of firewall requests and the ruleset they turn into: the model
// (nft_ruleset.h) and the nft script Apply submits.
#include "nft_ruleset.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"

namespace diyc::netcore {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

absl::Status ValidateNetworkName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_isalnum(static_cast<unsigned char>(name[0])) ||
      !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid network name ", Quote(name), ": must match [A-Za-z0-9][A-Za-z0-9_.-]{0,62}"));
  }
  return absl::OkStatus();
}

// Stricter than a kernel interface name: nft has no escape inside a quoted
// string (a '"' would end it and let the rest be read as nft syntax), and a
// trailing '*' in an interface name turns the match into a prefix wildcard.
absl::Status ValidateBridgeName(absl::string_view network, absl::string_view bridge) {
  const std::string context = absl::StrCat("network ", Quote(network), " bridge");
  absl::Status status = ValidateIfName(bridge);
  if (!status.ok()) return Annotate(status, context);
  if (!std::all_of(bridge.begin(), bridge.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": invalid interface name ", Quote(bridge),
                                                   ": only [A-Za-z0-9_.-] can be matched exactly by nftables"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSubnet(absl::string_view network, absl::string_view what, const IpPrefix& prefix,
                            IpFamily family) {
  const std::string context = absl::StrCat(what, " ", prefix.ToString(), " of network ", Quote(network));
  if (prefix.family() != family) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": not an ", family == IpFamily::kV4 ? "IPv4" : "IPv6", " prefix"));
  }
  // A /0 would masquerade or match every address, never what a network means.
  if (prefix.prefix_len() == 0) return absl::InvalidArgumentError(absl::StrCat(context, ": prefix length 0"));
  if (!(prefix.Network() == prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": host bits set (the network is ", prefix.Network().ToString(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateNftTableName(absl::string_view table) {
  if (table.empty() || table.size() > 32 || !absl::ascii_isalpha(static_cast<unsigned char>(table[0])) ||
      !std::all_of(table.begin(), table.end(),
                   [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; })) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid nftables table name ", Quote(table), ": must match [A-Za-z][A-Za-z0-9_]{0,31}"));
  }
  return absl::OkStatus();
}

absl::Status ValidateFirewallNetwork(const FirewallNetwork& network) {
  DIYC_RETURN_IF_ERROR(ValidateNetworkName(network.name));
  DIYC_RETURN_IF_ERROR(ValidateBridgeName(network.name, network.bridge));
  DIYC_RETURN_IF_ERROR(ValidateSubnet(network.name, "subnet", network.subnet, IpFamily::kV4));
  if (network.subnet6) {
    DIYC_RETURN_IF_ERROR(ValidateSubnet(network.name, "subnet6", *network.subnet6, IpFamily::kV6));
  }
  for (const IpAddress& peer : network.vxlan_peers) {
    if (network.vxlan_port == 0) {
      return absl::InvalidArgumentError(absl::StrCat("network ", Quote(network.name), " has peers but no VXLAN port"));
    }
    if (peer.family() != IpFamily::kV4) {
      return absl::InvalidArgumentError(
          absl::StrCat("VXLAN peer ", peer.ToString(), " of network ", Quote(network.name), ": not IPv4"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFirewallNetworks(const std::vector<FirewallNetwork>& networks) {
  std::set<std::string> names, bridges;
  for (const FirewallNetwork& network : networks) {
    DIYC_RETURN_IF_ERROR(ValidateFirewallNetwork(network));
    if (!names.insert(network.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("network ", Quote(network.name), " is listed twice"));
    }
    // Isolation is per bridge: two networks on one bridge could not be kept apart.
    if (!bridges.insert(network.bridge).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("bridge ", Quote(network.bridge), " of network ", Quote(network.name),
                       " belongs to another network too"));
    }
  }
  return absl::OkStatus();
}

namespace nft {

std::string NetworkComment(absl::string_view network) { return absl::StrCat("diyc:net:", network); }

std::string PeerSetName(uint16_t port) { return absl::StrCat("vxlan_peers_", port); }

// The forward rules are written so that no accept rule matches a packet a
// drop rule matches (every accept excludes the diyc bridges on its far side,
// and internal bridges are in that set), so the verdict never depends on rule
// order. Adding, removing or reordering networks therefore cannot open a hole
// for a moment, and the drift check may compare rules as a multiset.
Ruleset BuildRuleset(const std::vector<FirewallNetwork>& networks) {
  // Sorted, so the same networks in any order give the same table.
  std::vector<const FirewallNetwork*> sorted;
  for (const FirewallNetwork& network : networks) sorted.push_back(&network);
  std::sort(sorted.begin(), sorted.end(),
            [](const FirewallNetwork* a, const FirewallNetwork* b) { return a->name < b->name; });

  Ruleset ruleset;
  auto add = [&](absl::string_view chain, const FirewallNetwork& network, absl::string_view match,
                 absl::string_view what) {
    ruleset.rules.push_back(
        {std::string(chain), absl::StrCat(match, " comment \"", NetworkComment(network.name), "\""),
         absl::StrCat(what, " (network ", Quote(network.name), ")")});
  };
  for (const FirewallNetwork* network : sorted) {
    ruleset.bridges.push_back({network->bridge, network->name});
  }
  for (const FirewallNetwork* network : sorted) {
    const std::string bridge = absl::StrCat("\"", network->bridge, "\"");
    const std::string shown = Quote(network->bridge);
    if (network->internal) {
      add("forward", *network, absl::StrCat("iifname ", bridge, " oifname != ", bridge, " drop"),
          absl::StrCat("drop of traffic leaving internal bridge ", shown));
      add("forward", *network, absl::StrCat("iifname != ", bridge, " oifname ", bridge, " drop"),
          absl::StrCat("drop of traffic entering internal bridge ", shown));
    } else {
      add("forward", *network,
          absl::StrCat("iifname ", bridge, " oifname @", kBridgeSet, " oifname != ", bridge, " drop"),
          absl::StrCat("isolation of bridge ", shown, " from the other diyc bridges"));
      add("forward", *network, absl::StrCat("iifname ", bridge, " oifname != @", kBridgeSet, " accept"),
          absl::StrCat("accept of traffic leaving bridge ", shown));
      add("forward", *network,
          absl::StrCat("iifname != @", kBridgeSet, " oifname ", bridge, " ct state established,related accept"),
          absl::StrCat("accept of replies into bridge ", shown));
    }
  }
  // One set and one drop rule per VXLAN port, shared by the networks on it
  // (the kernel demultiplexes by VNI only after the packet is accepted), and
  // owned by the first of them.
  std::map<uint16_t, const FirewallNetwork*> port_owner;
  std::map<uint16_t, std::map<std::string, std::string>> port_peers;  // address -> network
  for (const FirewallNetwork* network : sorted) {
    if (network->vxlan_port == 0) continue;
    port_owner.emplace(network->vxlan_port, network);
    auto& peers = port_peers[network->vxlan_port];
    for (const IpAddress& peer : network->vxlan_peers) peers.emplace(peer.ToString(), network->name);
  }
  for (const auto& [port, owner] : port_owner) {
    PeerSet set{.port = port};
    for (const auto& [address, network] : port_peers[port]) set.peers.push_back({address, network});
    ruleset.peer_sets.push_back(std::move(set));
    add("input", *owner, absl::StrCat("udp dport ", port, " ip saddr != @", PeerSetName(port), " drop"),
        absl::StrCat("drop of VXLAN traffic to port ", port, " from non-peers"));
  }
  for (const FirewallNetwork* network : sorted) {
    if (!network->nat || network->internal) continue;
    const std::string subnet = network->subnet.ToString();
    add("postrouting", *network,
        absl::StrCat("ip saddr ", subnet, " oifname != \"", network->bridge, "\" masquerade"),
        absl::StrCat("masquerade for ", subnet));
  }
  return ruleset;
}

}  // namespace nft

// "add table" first makes "delete table" succeed when the table is absent;
// libnftables sends the whole buffer as one netlink batch, which the kernel
// commits entirely or not at all, so the old table is never half replaced.
std::string RenderNftRuleset(absl::string_view table, const std::vector<FirewallNetwork>& networks) {
  std::string script = absl::StrCat("add table inet ", table, "\ndelete table inet ", table, "\n");
  if (networks.empty()) return script;

  const nft::Ruleset ruleset = nft::BuildRuleset(networks);
  std::vector<std::string> elements;
  for (const nft::SetElement& element : ruleset.bridges) {
    elements.push_back(absl::StrCat("\"", element.value, "\""));
  }
  absl::StrAppend(&script, "table inet ", table, " {\n",                     //
                  "\tset ", nft::kBridgeSet, " {\n",                         //
                  "\t\ttype ", nft::kBridgeSetType, "\n",                    //
                  "\t\telements = { ", absl::StrJoin(elements, ", "), " }\n",  //
                  "\t}\n");
  for (const nft::PeerSet& set : ruleset.peer_sets) {
    absl::StrAppend(&script, "\tset ", nft::PeerSetName(set.port), " {\n\t\ttype ipv4_addr\n");
    if (!set.peers.empty()) {
      std::vector<std::string> addresses;
      for (const nft::SetElement& peer : set.peers) addresses.push_back(peer.value);
      absl::StrAppend(&script, "\t\telements = { ", absl::StrJoin(addresses, ", "), " }\n");
    }
    absl::StrAppend(&script, "\t}\n");
  }
  for (const nft::ChainSpec& chain : nft::kChains) {
    if (chain.only_with_rules && std::none_of(ruleset.rules.begin(), ruleset.rules.end(),
                                              [&](const nft::Rule& r) { return r.chain == chain.name; })) {
      continue;
    }
    absl::StrAppend(&script, "\tchain ", chain.name, " {\n\t\t", chain.declaration, "\n");
    for (const nft::Rule& rule : ruleset.rules) {
      if (rule.chain == chain.name) absl::StrAppend(&script, "\t\t", rule.text, "\n");
    }
    absl::StrAppend(&script, "\t}\n");
  }
  absl::StrAppend(&script, "}\n");
  return script;
}

}  // namespace diyc::netcore
