#include "cni_check.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cni_error.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/nl_socket.h"
#include "diyc/netcore/route.h"

namespace diyc::cni {
namespace {

using netcore::IpAddress;
using netcore::IpFamily;
using netcore::IpPrefix;

// Looks inside the namespace; appends what differs.
void CheckContainerSide(const CheckInput& in, std::vector<std::string>* drift) {
  absl::StatusOr<netcore::Netns> ns = netcore::Netns::OpenPath(in.netns);
  if (!ns.ok()) {
    drift->push_back(absl::StrCat("cannot open the namespace ", in.netns, ": ", ns.status().message()));
    return;
  }
  absl::StatusOr<netcore::NlSocket> sock = netcore::NlSocket::OpenIn(*ns);
  if (!sock.ok()) {
    drift->push_back(absl::StrCat("cannot inspect ", in.netns, ": ", sock.status().message()));
    return;
  }
  absl::StatusOr<std::optional<netcore::LinkInfo>> link = netcore::FindLink(*sock, in.ifname);
  if (!link.ok() || !link->has_value()) {
    drift->push_back(absl::StrCat("interface ", in.ifname, " is missing in ", in.netns));
    return;
  }
  const netcore::LinkInfo& info = **link;
  if (!in.prev->mac.empty() && absl::AsciiStrToLower(in.prev->mac) != absl::AsciiStrToLower(info.mac)) {
    drift->push_back(absl::StrCat(in.ifname, " has MAC ", info.mac, ", prevResult says ", in.prev->mac));
  }
  if (!info.up) drift->push_back(absl::StrCat(in.ifname, " is down"));
  absl::StatusOr<std::vector<netcore::AddrInfo>> addrs = netcore::ListAddresses(*sock, info.index);
  if (!addrs.ok()) {
    drift->push_back(absl::StrCat("cannot list the addresses of ", in.ifname, ": ", addrs.status().message()));
    return;
  }
  for (const std::string& want : in.prev->addresses) {
    absl::StatusOr<IpPrefix> prefix = IpPrefix::Parse(want);
    const bool present = prefix.ok() && std::any_of(addrs->begin(), addrs->end(), [&](const netcore::AddrInfo& a) {
      return a.prefix == *prefix;
    });
    if (!present) drift->push_back(absl::StrCat(in.ifname, " lacks address ", want));
  }
  for (const std::string& gw : in.prev->gateways) {
    absl::StatusOr<IpAddress> gateway = IpAddress::Parse(gw);
    if (!gateway.ok()) continue;
    absl::StatusOr<std::vector<netcore::RouteInfo>> routes = netcore::ListRoutes(*sock, gateway->family());
    const bool present = routes.ok() && std::any_of(routes->begin(), routes->end(), [&](const netcore::RouteInfo& r) {
      return r.dst.prefix_len() == 0 && r.gateway == *gateway && r.oif == info.index;
    });
    if (!present) drift->push_back(absl::StrCat("no default route via ", gw, " on ", in.ifname));
  }
}

void CheckHostSide(const CheckInput& in, std::vector<std::string>* drift) {
  absl::StatusOr<netcore::NlSocket> host = netcore::NlSocket::Open();
  if (!host.ok()) {
    drift->push_back(absl::StrCat("cannot inspect the host: ", host.status().message()));
    return;
  }
  const std::string& veth = in.attachment->host_ifname();
  absl::StatusOr<std::optional<netcore::LinkInfo>> link = netcore::FindLink(*host, veth);
  if (!link.ok() || !link->has_value()) {
    drift->push_back(absl::StrCat("host veth ", veth, " is missing"));
    return;
  }
  absl::StatusOr<std::optional<netcore::LinkInfo>> bridge = netcore::FindLink(*host, in.bridge);
  if (!bridge.ok() || !bridge->has_value()) {
    drift->push_back(absl::StrCat("bridge ", in.bridge, " is missing"));
  } else if ((*link)->master_index != (*bridge)->index) {
    drift->push_back(absl::StrCat("host veth ", veth, " is not on bridge ", in.bridge));
  }
  if (!(*link)->up) drift->push_back(absl::StrCat("host veth ", veth, " is down"));
}

}  // namespace

absl::Status CheckKernel(const CheckInput& in) {
  std::vector<std::string> drift;
  // diycd's record against prevResult: the same attachment?
  const std::vector<std::string>& addrs = in.prev->addresses;
  if (std::find(addrs.begin(), addrs.end(), in.attachment->ip()) == addrs.end()) {
    drift.push_back(absl::StrCat("diycd records address ", in.attachment->ip(), ", prevResult has ",
                                 absl::StrJoin(addrs, ", ")));
  }
  if (!in.prev->mac.empty() && absl::AsciiStrToLower(in.prev->mac) != in.attachment->mac()) {
    drift.push_back(absl::StrCat("diycd records MAC ", in.attachment->mac(), ", prevResult has ", in.prev->mac));
  }
  CheckContainerSide(in, &drift);
  CheckHostSide(in, &drift);
  if (drift.empty()) return absl::OkStatus();
  return CniError(kDrift, absl::StrCat("CHECK found drift: ", absl::StrJoin(drift, "; ")));
}

}  // namespace diyc::cni
