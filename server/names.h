// Names diycd accepts from clients and the kernel names it derives from them.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace diyc::server {

// Network and container names: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. They end up
// in file names, interface aliases and nftables comments, so nothing else.
absl::Status ValidateObjectName(absl::string_view kind, absl::string_view name);

// "diyc-NAME" when that fits in 15 bytes, else "diyc-" + a hash of the name.
std::string DefaultBridgeName(absl::string_view network);

// The VXLAN link of a spanning network: "dvx" + the VXLAN id (at most 11
// bytes). One VXLAN id per node is one network, so it cannot collide.
std::string VxlanDeviceName(uint32_t vxlan_id);

// A fresh host-side veth name: "dv" + 13 random hex digits (15 bytes), so
// names never collide across networks, restarts or concurrent attaches.
std::string NewHostVethName();

// A random locally administered unicast MAC ("x2:..."). Chosen before the
// interface exists, so the intent record already holds the final value.
std::string NewMacAddress();

// A short id of one diycd instance, derived from its state directory, so two
// instances (a test one beside the real one) never take each other's links.
std::string InstanceId(absl::string_view state_dir);

// The interface alias marking kernel objects that belong to network NAME of
// instance ID: "diyc:ID:NAME". Reconcile only ever deletes links carrying
// its own instance's mark.
std::string OwnerAlias(absl::string_view instance, absl::string_view network);
inline constexpr absl::string_view kOwnerAliasPrefix = "diyc:";

}  // namespace diyc::server
