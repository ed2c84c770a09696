// The result of ADD in the spec's shape for the requested version, and the
// parts of a prevResult that CHECK compares.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "diyc/v1/network.pb.h"
#include "nlohmann/json.hpp"

namespace diyc::cni {

struct ResultInput {
  const v1::Attachment* attachment = nullptr;
  std::string host_mac;  // of the host veth; "" leaves it out
  std::string netns;     // CNI_NETNS: the container interface's sandbox
  nlohmann::json dns;    // null: an empty dns object
};

// interfaces [host veth, container interface], ips (IPv4, and IPv6 on a dual
// stack network) on interface 1 with their gateway, default routes via the
// gateways, dns. Versions before 1.0.0 also give each ip its "version".
nlohmann::json BuildResult(const ResultInput& input, const std::string& cni_version);

// What CHECK needs from a prevResult.
struct PrevResult {
  std::string mac;                     // of the sandbox interface named ifname
  std::vector<std::string> addresses;  // "10.88.0.2/24", on that interface
  std::vector<std::string> gateways;   // their gateways, when given
};
// Code 7 when prevResult does not describe ifname inside netns.
absl::StatusOr<PrevResult> ParsePrevResult(const nlohmann::json& prev, const std::string& ifname);

}  // namespace diyc::cni
