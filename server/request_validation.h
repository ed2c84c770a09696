// The checks of client requests that need neither root nor the kernel: what
// Node::CreateNetwork, Node::Attach and Containers::Run refuse before they
// touch anything. Pure functions, so they can be tested and fuzzed alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/ip.h"
#include "diyc/v1/container.pb.h"
#include "diyc/v1/network.pb.h"

namespace diyc::server {

// A CreateNetworkRequest with its defaults applied, before any kernel object
// exists.
struct NetworkPlan {
  std::string name;
  netcore::IpPrefix subnet;
  netcore::IpAddress gateway;
  std::optional<netcore::IpPrefix> subnet6;
  std::optional<netcore::IpAddress> gateway6;
  std::string bridge;
  bool nat = true;
  bool internal = false;
  uint32_t mtu = 0;  // 0: the MTU of the host's default-route interface
  std::optional<netcore::IpPrefix> ip_range;
  // Set for a network spanning nodes. local and underlay_device are resolved
  // against the host later (one of them is given).
  struct Vxlan {
    uint32_t id = 0;
    uint16_t port = 0;
    std::optional<netcore::IpAddress> local;
    std::string underlay_device;
    std::vector<netcore::IpAddress> peers;
  };
  std::optional<Vxlan> vxlan;
};

// Names, subnets (ValidateSubnet, ValidateSubnet6), gateway and ip_range
// (Ipam::Create), bridge name, MTU and VXLAN settings and peers of a
// CreateNetworkRequest: INVALID_ARGUMENT.
absl::StatusOr<NetworkPlan> PlanNetworkRequest(const v1::CreateNetworkRequest& request);
inline absl::Status ValidateCreateNetworkRequest(const v1::CreateNetworkRequest& request) {
  return PlanNetworkRequest(request).status();
}

// The firewall's view of a planned network.
netcore::FirewallNetwork FirewallNetworkOf(const NetworkPlan& plan);

// Network name, target, interface name, static address syntax and MAC of an
// AttachContainerRequest (the static address is checked against the
// network's subnet later, under the node's lock).
absl::Status ValidateAttachRequest(const v1::AttachContainerRequest& request);

// An attachment key (a CNI runtime's container id, see Attachment.key),
// as the CNI specification defines a container id: an alphanumeric first
// character, then letters, digits, '_', '.' and '-'; at most 255 bytes here
// (the spec sets no limit; ours keeps records and log lines bounded).
absl::Status ValidateAttachmentKey(absl::string_view key);

// A VXLAN peer: an IPv4 unicast address that is not `local`.
absl::StatusOr<netcore::IpAddress> ParseVxlanPeer(absl::string_view address,
                                                  const std::optional<netcore::IpAddress>& local);

// Network, key (ValidateAttachmentKey) and ifname of a DetachContainerRequest;
// the target is optional when a key is given.
absl::Status ValidateDetachRequest(const v1::DetachContainerRequest& request);

// Network and each (key, ifname) of a CollectAttachmentsRequest.
absl::Status ValidateCollectRequest(const v1::CollectAttachmentsRequest& request);

// Command, environment, workdir, hostname, limits, networks, container name
// (empty: one is generated) and image name of a RunContainerRequest.
absl::Status ValidateRunRequest(const v1::RunContainerRequest& request);

}  // namespace diyc::server
