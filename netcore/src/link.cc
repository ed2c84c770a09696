#include "diyc/netcore/link.h"

#include <linux/if.h>
#include <linux/if_link.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/veth.h>
#include <netlink/msg.h>
#include <linux/rtnetlink.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"

namespace diyc::netcore {
namespace {

LinkInfo ToLinkInfo(rtnl_link* link) {
  LinkInfo info;
  info.index = rtnl_link_get_ifindex(link);
  if (const char* name = rtnl_link_get_name(link)) info.name = name;
  if (const char* kind = rtnl_link_get_type(link)) info.kind = kind;
  info.mtu = rtnl_link_get_mtu(link);
  if (nl_addr* addr = rtnl_link_get_addr(link); addr != nullptr && nl_addr_get_len(addr) == 6) {
    char buf[32];
    info.mac = nl_addr2str(addr, buf, sizeof(buf));
  }
  info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  info.master_index = rtnl_link_get_master(link);
  if (const char* alias = rtnl_link_get_ifalias(link)) info.alias = alias;
  info.group = rtnl_link_get_group(link);
  return info;
}

absl::Status ValidateLinkId(const LinkId& id) {
  if (const auto* name = std::get_if<std::string>(&id)) return ValidateIfName(*name);
  if (std::get<int>(id) <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid ifindex ", std::get<int>(id)));
  return absl::OkStatus();
}

// A link object naming id, for requests that address an existing link.
NlLinkPtr LinkFor(const LinkId& id) {
  NlLinkPtr link(rtnl_link_alloc());
  if (const auto* name = std::get_if<std::string>(&id)) {
    rtnl_link_set_name(link.get(), name->c_str());
  } else {
    rtnl_link_set_ifindex(link.get(), std::get<int>(id));
  }
  return link;
}

absl::StatusOr<NlAddrPtr> ParseMac(absl::string_view mac) {
  DIYC_RETURN_IF_ERROR(ValidateMac(mac));
  nl_addr* addr = nullptr;
  std::string copy(mac);
  if (nl_addr_parse(copy.c_str(), AF_LLC, &addr) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid MAC address ", Quote(mac)));
  }
  return NlAddrPtr(addr);
}

absl::Status ValidateMtu(uint32_t mtu) {
  if (mtu != 0 && (mtu < 68 || mtu > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid MTU ", mtu, ": must be 68..65535"));
  }
  return absl::OkStatus();
}

struct AfterCreate {
  std::string alias;
  bool no_ipv6 = false;
};

// Applies what the kernel ignores or refuses in a create request (IFLA_IFALIAS,
// IFLA_AF_SPEC) and returns the new link; deletes the link if that fails.
// For a veth no IPv6 link-local can appear before this runs: its peer is
// still down, so the near end has no carrier.
absl::StatusOr<LinkInfo> FinishCreate(NlSocket& sock, const std::string& name, const AfterCreate& after) {
  DIYC_ASSIGN_OR_RETURN(LinkInfo link, GetLink(sock, name));
  if (after.alias.empty() && !after.no_ipv6) return link;
  LinkChange change;
  if (!after.alias.empty()) change.alias = after.alias;
  if (after.no_ipv6) change.no_ipv6_addrgen = true;
  absl::Status changed = ChangeLink(sock, link.index, change);
  if (!changed.ok()) {
    (void)DeleteLink(sock, link.index);
    return changed;
  }
  link.alias = after.alias;
  return link;
}

}  // namespace

std::string LinkIdLabel(const LinkId& id) {
  if (const auto* name = std::get_if<std::string>(&id)) return Quote(*name);
  return absl::StrCat("#", std::get<int>(id));
}

absl::Status ValidateMac(absl::string_view mac) {
  bool ok = mac.size() == 17;
  for (size_t i = 0; ok && i < mac.size(); ++i) {
    char c = mac[i];
    if (i % 3 == 2) {
      ok = c == ':';
    } else {
      ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("invalid MAC address ", Quote(mac)));
  return absl::OkStatus();
}

absl::StatusOr<LinkInfo> CreateBridge(NlSocket& sock, const BridgeOptions& options) {
  DIYC_RETURN_IF_ERROR(ValidateIfName(options.name));
  DIYC_RETURN_IF_ERROR(ValidateMtu(options.mtu));
  NlLinkPtr link(rtnl_link_bridge_alloc());
  rtnl_link_set_name(link.get(), options.name.c_str());
  if (options.mtu != 0) rtnl_link_set_mtu(link.get(), options.mtu);
  if (options.up) rtnl_link_set_flags(link.get(), IFF_UP);
  NlAddrPtr mac;
  if (!options.mac.empty()) {
    DIYC_ASSIGN_OR_RETURN(mac, ParseMac(options.mac));
    rtnl_link_set_addr(link.get(), mac.get());
  }
  DIYC_RETURN_IF_ERROR(sock.Call(absl::StrCat("create bridge ", Quote(options.name)), [&](nl_sock* s) {
    return rtnl_link_add(s, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  }));
  return FinishCreate(sock, options.name, {.alias = options.alias});
}

absl::StatusOr<LinkInfo> CreateVeth(NlSocket& sock, const VethOptions& options) {
  DIYC_RETURN_IF_ERROR(ValidateIfName(options.name));
  DIYC_RETURN_IF_ERROR(ValidateIfName(options.peer_name));
  DIYC_RETURN_IF_ERROR(ValidateMtu(options.mtu));
  std::string what = absl::StrCat("create veth ", Quote(options.name), " (peer ", Quote(options.peer_name));
  if (options.peer_netns != nullptr) {
    if (!options.peer_netns->valid()) return absl::FailedPreconditionError(absl::StrCat(what, "): netns handle is closed"));
    absl::StrAppend(&what, " in netns ", Quote(options.peer_netns->label()));
  }
  absl::StrAppend(&what, ")");

  NlLinkPtr link(rtnl_link_veth_alloc());
  if (!link) return absl::ResourceExhaustedError(what);
  NlLinkPtr peer(rtnl_link_veth_get_peer(link.get()));  // an owned reference
  rtnl_link_set_name(link.get(), options.name.c_str());
  rtnl_link_set_name(peer.get(), options.peer_name.c_str());
  if (options.peer_netns != nullptr) rtnl_link_set_ns_fd(peer.get(), options.peer_netns->fd());
  if (options.mtu != 0) {
    rtnl_link_set_mtu(link.get(), options.mtu);
    rtnl_link_set_mtu(peer.get(), options.mtu);
  }
  if (options.master_index != 0) rtnl_link_set_master(link.get(), options.master_index);
  if (options.up) rtnl_link_set_flags(link.get(), IFF_UP);
  if (!options.peer_mac.empty()) {
    DIYC_ASSIGN_OR_RETURN(NlAddrPtr mac, ParseMac(options.peer_mac));
    rtnl_link_set_addr(peer.get(), mac.get());
  }

  absl::Status created = sock.Call(what, [&](nl_sock* s) {
    return rtnl_link_add(s, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  });
  if (!created.ok()) {
    // The kernel says EXFULL when the bridge already has 1023 ports.
    if (StatusErrno(created) == EXFULL) {
      return absl::ResourceExhaustedError(absl::StrCat(what, ": bridge has no free port (1023 at most)"));
    }
    return created;
  }
  return FinishCreate(sock, options.name, {.alias = options.alias, .no_ipv6 = options.no_ipv6});
}

absl::Status ChangeLink(NlSocket& sock, const LinkId& id, const LinkChange& change) {
  DIYC_RETURN_IF_ERROR(ValidateLinkId(id));
  if (change.name) DIYC_RETURN_IF_ERROR(ValidateIfName(*change.name));
  if (change.mtu) DIYC_RETURN_IF_ERROR(ValidateMtu(*change.mtu));
  if (change.mtu && *change.mtu == 0) return absl::InvalidArgumentError("invalid MTU 0");
  NlLinkPtr changes(rtnl_link_alloc());
  if (change.master_index) rtnl_link_set_master(changes.get(), *change.master_index);
  if (change.up) {
    if (*change.up) {
      rtnl_link_set_flags(changes.get(), IFF_UP);
    } else {
      rtnl_link_unset_flags(changes.get(), IFF_UP);
    }
  }
  if (change.mtu) rtnl_link_set_mtu(changes.get(), *change.mtu);
  if (change.mac) {
    DIYC_ASSIGN_OR_RETURN(NlAddrPtr mac, ParseMac(*change.mac));
    rtnl_link_set_addr(changes.get(), mac.get());
  }
  if (change.name) rtnl_link_set_name(changes.get(), change.name->c_str());
  if (change.alias) rtnl_link_set_ifalias(changes.get(), change.alias->c_str());
  if (change.group) rtnl_link_set_group(changes.get(), *change.group);
  if (change.no_ipv6_addrgen) {
    rtnl_link_inet6_set_addr_gen_mode(changes.get(),
                                      *change.no_ipv6_addrgen ? IN6_ADDR_GEN_MODE_NONE : IN6_ADDR_GEN_MODE_EUI64);
  }

  // Requests address the link by index, so a rename cannot be mistaken for
  // a lookup of the new name.
  int index = std::holds_alternative<int>(id) ? std::get<int>(id) : 0;
  if (index == 0) {
    DIYC_ASSIGN_OR_RETURN(LinkInfo current, GetLink(sock, id));
    index = current.index;
  }
  NlLinkPtr orig(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), index);
  return sock.Call(absl::StrCat("change link ", LinkIdLabel(id)), [&](nl_sock* s) {
    return rtnl_link_change(s, orig.get(), changes.get(), 0);
  });
}

absl::Status DeleteLink(NlSocket& sock, const LinkId& id) {
  DIYC_RETURN_IF_ERROR(ValidateLinkId(id));
  NlLinkPtr link = LinkFor(id);
  return sock.Call(absl::StrCat("delete link ", LinkIdLabel(id)),
                   [&](nl_sock* s) { return rtnl_link_delete(s, link.get()); });
}

absl::Status DeleteLinkGroup(NlSocket& sock, uint32_t group) {
  if (group == 0) return absl::InvalidArgumentError("refusing to delete link group 0 (every link's default)");
  // libnl has no request for this: RTM_DELLINK with no index or name and
  // IFLA_GROUP set.
  std::unique_ptr<nl_msg, void (*)(nl_msg*)> msg(nlmsg_alloc_simple(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK), nlmsg_free);
  if (!msg) return absl::ResourceExhaustedError("allocate netlink message");
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  if (nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 || nla_put_u32(msg.get(), IFLA_GROUP, group) < 0) {
    return absl::InternalError("build link group delete");
  }
  absl::Status status = sock.Call(absl::StrCat("delete link group ", group), [&](nl_sock* s) {
    int err = nl_send_auto(s, msg.get());
    return err < 0 ? err : nl_wait_for_ack(s);
  });
  // ENODEV: the group is empty.
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

absl::Status DeleteLinkIfExists(NlSocket& sock, const LinkId& id) {
  absl::Status status = DeleteLink(sock, id);
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

absl::StatusOr<LinkInfo> GetLink(NlSocket& sock, const LinkId& id) {
  DIYC_RETURN_IF_ERROR(ValidateLinkId(id));
  rtnl_link* raw = nullptr;
  const int index = std::holds_alternative<int>(id) ? std::get<int>(id) : 0;
  const char* name = index == 0 ? std::get<std::string>(id).c_str() : nullptr;
  absl::Status status = sock.Call(absl::StrCat("get link ", LinkIdLabel(id)), [&](nl_sock* s) {
    return rtnl_link_get_kernel(s, index, name, &raw);
  });
  NlLinkPtr link(raw);
  DIYC_RETURN_IF_ERROR(status);
  return ToLinkInfo(link.get());
}

absl::StatusOr<std::optional<LinkInfo>> FindLink(NlSocket& sock, const LinkId& id) {
  absl::StatusOr<LinkInfo> link = GetLink(sock, id);
  if (absl::IsNotFound(link.status())) return std::optional<LinkInfo>();
  if (!link.ok()) return link.status();
  return std::optional<LinkInfo>(*std::move(link));
}

absl::StatusOr<std::vector<LinkInfo>> ListLinks(NlSocket& sock) {
  DIYC_ASSIGN_OR_RETURN(NlCachePtr cache, sock.Dump("list links", [](nl_sock* s, nl_cache** out) {
    return rtnl_link_alloc_cache(s, AF_UNSPEC, out);
  }));
  std::vector<LinkInfo> links;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr; obj = nl_cache_get_next(obj)) {
    links.push_back(ToLinkInfo(reinterpret_cast<rtnl_link*>(obj)));
  }
  return links;
}

absl::Status SetLinkUp(NlSocket& sock, const LinkId& id, bool up) {
  LinkChange change;
  change.up = up;
  return ChangeLink(sock, id, change);
}

absl::Status BringLoopbackUp(NlSocket& sock) {
  // lo is always ifindex 1 in a network namespace.
  NlLinkPtr orig(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), 1);
  NlLinkPtr changes(rtnl_link_alloc());
  rtnl_link_set_flags(changes.get(), IFF_UP);
  return sock.Call("bring lo up", [&](nl_sock* s) { return rtnl_link_change(s, orig.get(), changes.get(), 0); });
}

}  // namespace diyc::netcore
