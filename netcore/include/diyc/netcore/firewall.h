// The NAT-and-isolation firewall of diyc's networks, kept in one nftables
// table that diyc owns and replaces as a whole.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/netns.h"

namespace diyc::netcore {

struct FirewallNetwork {
  std::string name;    // diyc network name: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
  std::string bridge;  // Linux bridge name: an interface name of [A-Za-z0-9_.-]
  IpPrefix subnet;     // IPv4 network (host bits zero)
  // Routed without NAT; the forward rules match interfaces, so they cover it.
  std::optional<IpPrefix> subnet6;
  bool nat = true;        // masquerade IPv4 traffic leaving the network (not for internal)
  bool internal = false;  // nothing enters or leaves the network except between its own members
  // A network spanning nodes over VXLAN: UDP to this port is accepted only
  // from the peers of the networks using it (VXLAN has no authentication;
  // anyone else could inject frames, and a removed peer could keep talking).
  uint16_t vxlan_port = 0;  // 0: node-local network
  std::vector<IpAddress> vxlan_peers;  // IPv4
};

// The kernel-facing firewall of diyc's networks. Implementations are
// thread-compatible: callers serialise all calls.
class Firewall {
 public:
  virtual ~Firewall() = default;

  // Replaces diyc's whole ruleset with exactly the one for `networks`, in one
  // atomic transaction. An empty list removes diyc's table entirely.
  // Idempotent: applying twice gives the same ruleset, no duplicates.
  // INVALID_ARGUMENT (before anything reaches the kernel) for bad networks.
  virtual absl::Status Apply(const std::vector<FirewallNetwork>& networks) = 0;

  // Differences between the kernel and what Apply(networks) would install,
  // one readable line each (e.g. "table inet diyc is missing", "masquerade
  // for 10.1.0.0/24 (network 'a') is missing"); empty when in sync.
  virtual absl::StatusOr<std::vector<std::string>> Check(const std::vector<FirewallNetwork>& networks) = 0;
};

// The firewall as an nftables table `table` of family inet, driven through
// libnftables (never the `nft` program). With `netns`, which must outlive the
// firewall, the table lives in that network namespace; nullptr: the calling
// thread's. A bad table name makes every call fail with INVALID_ARGUMENT.
std::unique_ptr<Firewall> MakeNftablesFirewall(std::string table = "diyc", const Netns* netns = nullptr);

// An nftables table name diyc may own: [A-Za-z][A-Za-z0-9_]{0,31}. It is
// written unquoted into scripts (nft accepts no quoted table names). nft
// keywords ("ip", "counter", ...) pass this check, but nft refuses them and
// Apply fails with its syntax error.
absl::Status ValidateNftTableName(absl::string_view table);

// One network on its own (names, bridge, prefixes): INVALID_ARGUMENT.
absl::Status ValidateFirewallNetwork(const FirewallNetwork& network);
// Every network, plus what only a list can get wrong: two networks with one
// name or one bridge.
absl::Status ValidateFirewallNetworks(const std::vector<FirewallNetwork>& networks);

// The nft script Apply() submits: "add table; delete table; table { ... }",
// an atomic replace of the whole table (only "add; delete" for no networks).
// Pure. The inputs must have passed ValidateNftTableName and
// ValidateFirewallNetworks; rendering does not check them again.
std::string RenderNftRuleset(absl::string_view table, const std::vector<FirewallNetwork>& networks);

// The drift report of Check(), from the kernel's text listing of the table
// (`list table inet TABLE`; nullopt when the table does not exist). Pure.
std::vector<std::string> DiffNftTable(absl::string_view table, const std::vector<FirewallNetwork>& networks,
                                      const std::optional<std::string>& listing);

}  // namespace diyc::netcore
