// Network interfaces: bridges, veth pairs, and changes to any link.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/nl_socket.h"

namespace diyc::netcore {

// A link named by its index or its name.
using LinkId = std::variant<int, std::string>;
std::string LinkIdLabel(const LinkId& id);

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;  // "bridge", "veth", ... or "" for physical/loopback
  uint32_t mtu = 0;
  std::string mac;   // "aa:bb:cc:dd:ee:ff", "" if none
  bool up = false;   // administratively up (IFF_UP)
  int master_index = 0;  // 0 if none
  std::string alias;     // IFLA_IFALIAS, diyc's ownership mark
  uint32_t group = 0;    // IFLA_GROUP
};

struct BridgeOptions {
  std::string name;
  uint32_t mtu = 0;  // 0: kernel default
  bool up = true;
  std::string alias;
  // A fixed address. Without one a bridge takes the lowest address of its
  // ports and changes it when that port leaves, leaving every neighbour's
  // ARP entry for the gateway stale.
  std::string mac;
};

struct VethOptions {
  std::string name;       // the end that stays in the socket's namespace
  std::string peer_name;  // final name of the other end, e.g. "eth0"
  // Where the peer is created, directly and under its final name: moving a
  // link between namespaces afterwards costs an RCU grace period (~20 ms).
  const Netns* peer_netns = nullptr;  // nullptr: the socket's namespace
  uint32_t mtu = 0;
  int master_index = 0;  // enslave the near end at creation, 0: none
  bool up = false;
  // The peer always starts down: the kernel cannot open it before the pair is
  // complete (ENOTCONN). Bring it up with a socket in its namespace.
  std::string peer_mac;  // "" lets the kernel choose
  // No IPv6 link-local on the near end: the host end of a container's veth
  // never needs one, and each one floods DAD/RS multicast to every bridge port.
  bool no_ipv6 = false;
  std::string alias;
};

// What to change; unset fields stay as they are.
struct LinkChange {
  std::optional<int> master_index;  // 0 removes the master
  std::optional<bool> up;
  std::optional<uint32_t> mtu;
  std::optional<std::string> mac;
  std::optional<std::string> name;
  std::optional<std::string> alias;
  // Stop the kernel from generating IPv6 addresses (link-local) on the link.
  std::optional<bool> no_ipv6_addrgen;
  std::optional<uint32_t> group;  // IFLA_GROUP
};

absl::StatusOr<LinkInfo> CreateBridge(NlSocket& sock, const BridgeOptions& options);
// Creates the pair in one request; returns the near end.
absl::StatusOr<LinkInfo> CreateVeth(NlSocket& sock, const VethOptions& options);
absl::Status ChangeLink(NlSocket& sock, const LinkId& id, const LinkChange& change);
absl::Status DeleteLink(NlSocket& sock, const LinkId& id);
// Deletes every link in `group` in one kernel operation: the kernel then
// waits for one RCU grace period for all of them instead of one per link
// (tens of milliseconds each). No link in the group is fine.
absl::Status DeleteLinkGroup(NlSocket& sock, uint32_t group);
// DeleteLink that treats a missing link as done.
absl::Status DeleteLinkIfExists(NlSocket& sock, const LinkId& id);

// Asks the kernel for exactly one link (no cache dump): NOT_FOUND if absent.
absl::StatusOr<LinkInfo> GetLink(NlSocket& sock, const LinkId& id);
absl::StatusOr<std::optional<LinkInfo>> FindLink(NlSocket& sock, const LinkId& id);
absl::StatusOr<std::vector<LinkInfo>> ListLinks(NlSocket& sock);

absl::Status SetLinkUp(NlSocket& sock, const LinkId& id, bool up);
// Brings the loopback device of the socket's namespace up.
absl::Status BringLoopbackUp(NlSocket& sock);

// Parses "aa:bb:cc:dd:ee:ff" (hex, 6 octets); INVALID_ARGUMENT otherwise.
absl::Status ValidateMac(absl::string_view mac);

}  // namespace diyc::netcore
