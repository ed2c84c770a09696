// Routes in the main table.
#pragma once

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/nl_socket.h"

namespace diyc::netcore {

struct RouteSpec {
  IpPrefix dst;                      // prefix_len 0: the default route
  std::optional<IpAddress> gateway;  // via
  int oif = 0;                       // dev; 0: the kernel picks from the gateway
};

struct RouteInfo {
  IpPrefix dst;
  std::optional<IpAddress> gateway;
  int oif = 0;
};

// The default route of a family: 0.0.0.0/0 or ::/0.
IpPrefix DefaultRoute(IpFamily family);

// At least a gateway or an oif; the gateway's family must match dst's.
// ALREADY_EXISTS if the route is present.
absl::Status AddRoute(NlSocket& sock, const RouteSpec& route);
absl::Status DeleteRoute(NlSocket& sock, const RouteSpec& route);
// Unicast routes of the main table.
absl::StatusOr<std::vector<RouteInfo>> ListRoutes(NlSocket& sock, IpFamily family);

}  // namespace diyc::netcore
