#include "diyc/netcore/addr.h"

#include <linux/if_addr.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/addr.h>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::netcore {
namespace {

NlRtAddrPtr BuildAddr(int ifindex, const IpPrefix& prefix) {
  NlRtAddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), ToAf(prefix.family()));
  NlAddrPtr local = ToNlAddr(prefix.address(), prefix.prefix_len());
  rtnl_addr_set_local(addr.get(), local.get());
  rtnl_addr_set_prefixlen(addr.get(), prefix.prefix_len());
  return addr;
}

std::string What(absl::string_view verb, int ifindex, const IpPrefix& prefix) {
  return absl::StrCat(verb, " address ", prefix.ToString(), " on link #", ifindex);
}

absl::Status CheckIndex(int ifindex) {
  if (ifindex <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid ifindex ", ifindex));
  return absl::OkStatus();
}

}  // namespace

absl::Status AddAddress(NlSocket& sock, int ifindex, const IpPrefix& prefix, const AddrOptions& options) {
  DIYC_RETURN_IF_ERROR(CheckIndex(ifindex));
  NlRtAddrPtr addr = BuildAddr(ifindex, prefix);
  if (prefix.address().is_v4() && prefix.prefix_len() < 31) {
    // Give IPv4 addresses their broadcast address, as `ip addr add ... brd +`.
    uint32_t host_mask = prefix.prefix_len() == 0 ? 0xffffffffu : (0xffffffffu >> prefix.prefix_len());
    NlAddrPtr brd = ToNlAddr(IpAddress::FromV4(prefix.address().v4() | host_mask), 32);
    rtnl_addr_set_broadcast(addr.get(), brd.get());
  }
  if (options.no_dad && !prefix.address().is_v4()) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  return sock.Call(What("add", ifindex, prefix),
                   [&](nl_sock* s) { return rtnl_addr_add(s, addr.get(), NLM_F_EXCL); });
}

absl::Status DeleteAddress(NlSocket& sock, int ifindex, const IpPrefix& prefix) {
  DIYC_RETURN_IF_ERROR(CheckIndex(ifindex));
  NlRtAddrPtr addr = BuildAddr(ifindex, prefix);
  return sock.Call(What("delete", ifindex, prefix), [&](nl_sock* s) { return rtnl_addr_delete(s, addr.get(), 0); });
}

absl::StatusOr<std::vector<AddrInfo>> ListAddresses(NlSocket& sock, std::optional<int> ifindex,
                                                   std::optional<IpFamily> family) {
  DIYC_ASSIGN_OR_RETURN(NlCachePtr cache, sock.Dump("list addresses", [](nl_sock* s, nl_cache** out) {
    return rtnl_addr_alloc_cache(s, out);
  }));
  std::vector<AddrInfo> addrs;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (ifindex && rtnl_addr_get_ifindex(addr) != *ifindex) continue;
    nl_addr* local = rtnl_addr_get_local(addr);
    if (local == nullptr) continue;
    int af = nl_addr_get_family(local);
    IpFamily fam;
    if (af == AF_INET && nl_addr_get_len(local) == 4) {
      fam = IpFamily::kV4;
    } else if (af == AF_INET6 && nl_addr_get_len(local) == 16) {
      fam = IpFamily::kV6;
    } else {
      continue;
    }
    if (family && fam != *family) continue;
    AddrInfo info;
    info.ifindex = rtnl_addr_get_ifindex(addr);
    info.prefix = IpPrefix(IpAddress::FromBytes(fam, static_cast<const uint8_t*>(nl_addr_get_binary_addr(local))),
                           rtnl_addr_get_prefixlen(addr));
    addrs.push_back(info);
  }
  return addrs;
}

}  // namespace diyc::netcore
