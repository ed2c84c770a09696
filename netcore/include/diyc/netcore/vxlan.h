// VXLAN links and their forwarding database: the layer-2 segment that lets
// one bridge span nodes, with head-end replication to a list of peers
// instead of multicast.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/nl_socket.h"

namespace diyc::netcore {

// The IANA port; the kernel's own default (8472) predates it.
inline constexpr uint16_t kVxlanDefaultPort = 4789;
// What VXLAN over IPv4 adds to each frame: outer IPv4 (20), UDP (8),
// VXLAN (8) and the inner Ethernet header (14).
inline constexpr uint32_t kVxlanOverhead = 50;
inline constexpr uint32_t kVxlanMaxId = (1u << 24) - 1;

struct VxlanOptions {
  std::string name;
  uint32_t id = 0;  // VNI, 1..kVxlanMaxId
  uint16_t port = kVxlanDefaultPort;
  IpAddress local;           // IPv4 source address of the tunnel
  int underlay_index = 0;    // device the tunnel leaves by, 0: any
  uint32_t mtu = 0;          // 0: the kernel's choice (underlay MTU - 50)
  int master_index = 0;      // bridge to enslave to, 0: none
  bool up = true;
  std::string alias;
};

absl::Status ValidateVxlanId(uint32_t id);

// Creates the link with learning on: remote MACs are learnt from traffic,
// so only broadcasts and unknown unicast are replicated to every peer.
// The link never gets an IPv6 link-local (it is a bridge port).
absl::StatusOr<LinkInfo> CreateVxlan(NlSocket& sock, const VxlanOptions& options);

struct FdbEntry {
  std::string mac;  // "00:00:00:00:00:00" for a flooding entry
  IpAddress dst;    // the remote tunnel endpoint
  bool permanent = false;
};

// The forwarding entries of one VXLAN link that point at a remote endpoint.
absl::StatusOr<std::vector<FdbEntry>> ListVxlanFdb(NlSocket& sock, int vxlan_index);

// Adds an all-zero-MAC entry for `peer`: broadcasts and unknown unicast are
// copied to it. Present already is fine.
absl::Status AddVxlanFloodPeer(NlSocket& sock, int vxlan_index, const IpAddress& peer);

// Removes `peer`'s flooding entry and every learnt entry pointing at it, so
// no frame goes to that node any more. Absent is fine.
absl::Status RemoveVxlanPeer(NlSocket& sock, int vxlan_index, const IpAddress& peer);

}  // namespace diyc::netcore
