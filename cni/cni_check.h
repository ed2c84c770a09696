// CHECK's comparison of the kernel with prevResult and diycd's record: the
// container interface (name, MAC, addresses, default route) inside the
// namespace and the host veth on the network's bridge.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "cni_result.h"
#include "diyc/v1/network.pb.h"

namespace diyc::cni {

struct CheckInput {
  std::string netns;   // CNI_NETNS
  std::string ifname;  // CNI_IFNAME
  const PrevResult* prev = nullptr;
  const v1::Attachment* attachment = nullptr;  // diycd's record
  std::string bridge;                          // the network's bridge
};

// OK when everything matches; otherwise code 110 (kDrift) listing every
// difference found, e.g. "eth0 is missing in /run/netns/x".
absl::Status CheckKernel(const CheckInput& input);

}  // namespace diyc::cni
