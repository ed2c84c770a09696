// Interface addresses (IPv4 and IPv6).
#pragma once

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/nl_socket.h"

namespace diyc::netcore {

struct AddrInfo {
  int ifindex = 0;
  IpPrefix prefix;  // address with its prefix length
};

struct AddrOptions {
  // IPv6: usable at once, without duplicate address detection. Right for
  // addresses diyc's IPAM hands out, which cannot collide.
  bool no_dad = false;
};

// ALREADY_EXISTS if the interface already has this address.
absl::Status AddAddress(NlSocket& sock, int ifindex, const IpPrefix& prefix, const AddrOptions& options = {});
absl::Status DeleteAddress(NlSocket& sock, int ifindex, const IpPrefix& prefix);
// All addresses, or those of one interface; family filters when set.
absl::StatusOr<std::vector<AddrInfo>> ListAddresses(NlSocket& sock, std::optional<int> ifindex = std::nullopt,
                                                   std::optional<IpFamily> family = std::nullopt);

}  // namespace diyc::netcore
