#include "diyc/netcore/route.h"

#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::netcore {
namespace {

std::string Describe(const RouteSpec& route) {
  std::string text = route.dst.prefix_len() == 0 ? "default" : route.dst.ToString();
  if (route.gateway) absl::StrAppend(&text, " via ", route.gateway->ToString());
  if (route.oif != 0) absl::StrAppend(&text, " dev #", route.oif);
  return text;
}

absl::StatusOr<NlRoutePtr> BuildRoute(const RouteSpec& route) {
  if (!route.gateway && route.oif == 0) {
    return absl::InvalidArgumentError(absl::StrCat("route ", Describe(route), ": needs a gateway or a device"));
  }
  if (route.gateway && route.gateway->family() != route.dst.family()) {
    return absl::InvalidArgumentError(absl::StrCat("route ", Describe(route), ": gateway family differs from destination"));
  }
  if (!(route.dst.Network() == route.dst)) {
    return absl::InvalidArgumentError(absl::StrCat("route ", Describe(route), ": destination has host bits set"));
  }
  NlRoutePtr r(rtnl_route_alloc());
  const int af = ToAf(route.dst.family());
  rtnl_route_set_family(r.get(), af);
  rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
  rtnl_route_set_type(r.get(), RTN_UNICAST);
  rtnl_route_set_protocol(r.get(), RTPROT_BOOT);
  // A route straight onto a device reaches hosts on the link.
  rtnl_route_set_scope(r.get(), route.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  NlAddrPtr dst = ToNlAddr(route.dst.address(), route.dst.prefix_len());
  rtnl_route_set_dst(r.get(), dst.get());
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (route.oif != 0) rtnl_route_nh_set_ifindex(nh, route.oif);
  if (route.gateway) {
    NlAddrPtr gw = ToNlAddr(*route.gateway, route.gateway->is_v4() ? 32 : 128);
    rtnl_route_nh_set_gateway(nh, gw.get());
  }
  rtnl_route_add_nexthop(r.get(), nh);  // the route owns nh from here
  return r;
}

}  // namespace

IpPrefix DefaultRoute(IpFamily family) {
  uint8_t zero[16] = {};
  return IpPrefix(IpAddress::FromBytes(family, zero), 0);
}

absl::Status AddRoute(NlSocket& sock, const RouteSpec& route) {
  DIYC_ASSIGN_OR_RETURN(NlRoutePtr r, BuildRoute(route));
  return sock.Call(absl::StrCat("add route ", Describe(route)),
                   [&](nl_sock* s) { return rtnl_route_add(s, r.get(), NLM_F_EXCL); });
}

absl::Status DeleteRoute(NlSocket& sock, const RouteSpec& route) {
  DIYC_ASSIGN_OR_RETURN(NlRoutePtr r, BuildRoute(route));
  // Deletion matches on what is given; let the kernel match any scope.
  rtnl_route_set_scope(r.get(), RT_SCOPE_NOWHERE);
  return sock.Call(absl::StrCat("delete route ", Describe(route)),
                   [&](nl_sock* s) { return rtnl_route_delete(s, r.get(), 0); });
}

absl::StatusOr<std::vector<RouteInfo>> ListRoutes(NlSocket& sock, IpFamily family) {
  DIYC_ASSIGN_OR_RETURN(NlCachePtr cache, sock.Dump("list routes", [&](nl_sock* s, nl_cache** out) {
    return rtnl_route_alloc_cache(s, ToAf(family), 0, out);
  }));
  std::vector<RouteInfo> routes;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr; obj = nl_cache_get_next(obj)) {
    auto* r = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST) continue;
    RouteInfo info;
    nl_addr* dst = rtnl_route_get_dst(r);
    const uint8_t zero[16] = {};
    const void* dst_bytes = (dst != nullptr && nl_addr_get_len(dst) > 0) ? nl_addr_get_binary_addr(dst) : zero;
    info.dst = IpPrefix(IpAddress::FromBytes(family, static_cast<const uint8_t*>(dst_bytes)),
                        dst != nullptr ? nl_addr_get_prefixlen(dst) : 0);
    if (rtnl_route_get_nnexthops(r) > 0) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
      info.oif = rtnl_route_nh_get_ifindex(nh);
      if (nl_addr* gw = rtnl_route_nh_get_gateway(nh); gw != nullptr && nl_addr_get_len(gw) > 0) {
        info.gateway = IpAddress::FromBytes(family, static_cast<const uint8_t*>(nl_addr_get_binary_addr(gw)));
      }
    }
    routes.push_back(info);
  }
  return routes;
}

}  // namespace diyc::netcore
