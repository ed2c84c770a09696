#include "diyc/netcore/vxlan.h"

#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/errno.h>
#include <sys/socket.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"

namespace diyc::netcore {
namespace {

constexpr char kFloodMac[] = "00:00:00:00:00:00";

absl::StatusOr<NlAddrPtr> MacAddr(absl::string_view mac) {
  nl_addr* addr = nullptr;
  std::string copy(mac);
  if (nl_addr_parse(copy.c_str(), AF_LLC, &addr) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid MAC address ", Quote(mac)));
  }
  return NlAddrPtr(addr);
}

absl::Status RequireV4(const IpAddress& address, absl::string_view what) {
  if (address.family() != IpFamily::kV4) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", address.ToString(), " is not an IPv4 address"));
  }
  return absl::OkStatus();
}

using NlMsgPtr = std::unique_ptr<nl_msg, void (*)(nl_msg*)>;

// A request on an FDB entry of the VXLAN link itself (NTF_SELF), as
// `bridge fdb ... self` sends it. Built by hand: libnl leaves NDA_DST out of
// bridge-family neighbour requests, and the VXLAN driver needs it.
absl::StatusOr<NlMsgPtr> FdbMessage(int type, int flags, int vxlan_index, absl::string_view mac,
                                    const IpAddress& dst) {
  NlMsgPtr msg(nlmsg_alloc_simple(type, NLM_F_REQUEST | NLM_F_ACK | flags), nlmsg_free);
  if (!msg) return absl::ResourceExhaustedError("allocate netlink message");
  ndmsg ndm{};
  ndm.ndm_family = AF_BRIDGE;
  ndm.ndm_ifindex = vxlan_index;
  ndm.ndm_flags = NTF_SELF;
  ndm.ndm_state = NUD_PERMANENT | NUD_NOARP;
  DIYC_ASSIGN_OR_RETURN(NlAddrPtr lladdr, MacAddr(mac));
  NlAddrPtr ip = ToNlAddr(dst, 32);
  if (nlmsg_append(msg.get(), &ndm, sizeof(ndm), NLMSG_ALIGNTO) < 0 ||
      nla_put(msg.get(), NDA_LLADDR, nl_addr_get_len(lladdr.get()), nl_addr_get_binary_addr(lladdr.get())) < 0 ||
      nla_put(msg.get(), NDA_DST, nl_addr_get_len(ip.get()), nl_addr_get_binary_addr(ip.get())) < 0) {
    return absl::InternalError("build forwarding database request");
  }
  return msg;
}

absl::Status Send(NlSocket& sock, absl::string_view what, nl_msg* msg) {
  return sock.Call(what, [&](nl_sock* s) {
    int err = nl_send_auto(s, msg);
    return err < 0 ? err : nl_wait_for_ack(s);
  });
}

}  // namespace

absl::Status ValidateVxlanId(uint32_t id) {
  if (id == 0 || id > kVxlanMaxId) {
    return absl::InvalidArgumentError(absl::StrCat("invalid VXLAN id ", id, ": must be 1..", kVxlanMaxId));
  }
  return absl::OkStatus();
}

absl::StatusOr<LinkInfo> CreateVxlan(NlSocket& sock, const VxlanOptions& options) {
  DIYC_RETURN_IF_ERROR(ValidateIfName(options.name));
  DIYC_RETURN_IF_ERROR(ValidateVxlanId(options.id));
  DIYC_RETURN_IF_ERROR(RequireV4(options.local, "VXLAN local address"));
  if (options.port == 0) return absl::InvalidArgumentError("invalid VXLAN port 0");
  const std::string what = absl::StrCat("create vxlan ", Quote(options.name), " (id ", options.id, ")");

  NlLinkPtr link(rtnl_link_vxlan_alloc());
  if (!link) return absl::ResourceExhaustedError(what);
  rtnl_link_set_name(link.get(), options.name.c_str());
  rtnl_link_vxlan_set_id(link.get(), options.id);
  rtnl_link_vxlan_set_port(link.get(), options.port);
  NlAddrPtr local = ToNlAddr(options.local, 32);
  rtnl_link_vxlan_set_local(link.get(), local.get());
  if (options.underlay_index != 0) rtnl_link_vxlan_set_link(link.get(), options.underlay_index);
  rtnl_link_vxlan_set_learning(link.get(), 1);
  if (options.mtu != 0) rtnl_link_set_mtu(link.get(), options.mtu);
  if (options.master_index != 0) rtnl_link_set_master(link.get(), options.master_index);
  DIYC_RETURN_IF_ERROR(sock.Call(what, [&](nl_sock* s) {
    return rtnl_link_add(s, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  }));
  // Alias and address-generation mode cannot go in the create request; the
  // link comes up only after them, so no link-local is ever generated.
  DIYC_ASSIGN_OR_RETURN(LinkInfo created, GetLink(sock, options.name));
  LinkChange change;
  change.no_ipv6_addrgen = true;
  if (!options.alias.empty()) change.alias = options.alias;
  absl::Status changed = ChangeLink(sock, created.index, change);
  if (changed.ok() && options.up) changed = SetLinkUp(sock, created.index, true);
  if (!changed.ok()) {
    (void)DeleteLink(sock, created.index);
    return changed;
  }
  return GetLink(sock, created.index);
}

absl::StatusOr<std::vector<FdbEntry>> ListVxlanFdb(NlSocket& sock, int vxlan_index) {
  struct Dump {
    int ifindex;
    std::vector<FdbEntry> entries;
  } dump{vxlan_index, {}};
  auto on_entry = [](nl_msg* msg, void* arg) -> int {
    auto* dump = static_cast<Dump*>(arg);
    nlmsghdr* header = nlmsg_hdr(msg);
    if (header->nlmsg_type != RTM_NEWNEIGH) return NL_OK;
    const auto* ndm = static_cast<const ndmsg*>(nlmsg_data(header));
    nlattr* attrs[NDA_MAX + 1];
    if (ndm->ndm_ifindex != dump->ifindex || nlmsg_parse(header, sizeof(ndmsg), attrs, NDA_MAX, nullptr) < 0) {
      return NL_OK;
    }
    // Only the link's own entries that point at a remote endpoint.
    if (attrs[NDA_LLADDR] == nullptr || nla_len(attrs[NDA_LLADDR]) != 6 || attrs[NDA_DST] == nullptr ||
        nla_len(attrs[NDA_DST]) != 4) {
      return NL_OK;
    }
    const auto* mac = static_cast<const unsigned char*>(nla_data(attrs[NDA_LLADDR]));
    const auto* ip = static_cast<const unsigned char*>(nla_data(attrs[NDA_DST]));
    absl::StatusOr<IpAddress> dst = IpAddress::Parse(absl::StrCat(ip[0], ".", ip[1], ".", ip[2], ".", ip[3]));
    if (!dst.ok()) return NL_OK;
    char text[18];
    std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                  mac[5]);
    dump->entries.push_back({.mac = text, .dst = *dst, .permanent = (ndm->ndm_state & NUD_PERMANENT) != 0});
    return NL_OK;
  };
  // A bridge-family dump walks every device's forwarding database; libnl's
  // neighbour cache would drop the remote endpoint of VXLAN entries.
  DIYC_RETURN_IF_ERROR(sock.Call("list forwarding database", [&](nl_sock* s) {
    ifinfomsg request{};
    request.ifi_family = AF_BRIDGE;
    int err = nl_send_simple(s, RTM_GETNEIGH, NLM_F_DUMP, &request, sizeof(request));
    if (err < 0) return err;
    // The socket's callbacks (which capture the kernel's error) with our
    // parser added; nl_socket_get_cb hands out a reference of its own.
    nl_cb* socket_cb = nl_socket_get_cb(s);
    nl_cb* cb = nl_cb_clone(socket_cb);
    nl_cb_put(socket_cb);
    if (cb == nullptr) return -NLE_NOMEM;
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_entry, &dump);
    err = nl_recvmsgs(s, cb);
    nl_cb_put(cb);
    return err;
  }));
  return std::move(dump.entries);
}

absl::Status AddVxlanFloodPeer(NlSocket& sock, int vxlan_index, const IpAddress& peer) {
  DIYC_RETURN_IF_ERROR(RequireV4(peer, "VXLAN peer"));
  // NLM_F_APPEND: the all-zero MAC holds a list of remotes, one per peer.
  DIYC_ASSIGN_OR_RETURN(NlMsgPtr msg,
                        FdbMessage(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, vxlan_index, kFloodMac, peer));
  absl::Status status = Send(sock, absl::StrCat("add VXLAN flooding entry for ", peer.ToString()), msg.get());
  if (absl::IsAlreadyExists(status)) return absl::OkStatus();
  return status;
}

absl::Status RemoveVxlanPeer(NlSocket& sock, int vxlan_index, const IpAddress& peer) {
  DIYC_RETURN_IF_ERROR(RequireV4(peer, "VXLAN peer"));
  DIYC_ASSIGN_OR_RETURN(std::vector<FdbEntry> entries, ListVxlanFdb(sock, vxlan_index));
  for (const FdbEntry& entry : entries) {
    if (!(entry.dst == peer)) continue;
    DIYC_ASSIGN_OR_RETURN(NlMsgPtr msg, FdbMessage(RTM_DELNEIGH, 0, vxlan_index, entry.mac, peer));
    absl::Status status =
        Send(sock, absl::StrCat("delete VXLAN entry ", entry.mac, " -> ", peer.ToString()), msg.get());
    // Gone already (aged out, or removed concurrently) is what we wanted.
    if (!status.ok() && !absl::IsNotFound(status)) return status;
  }
  return absl::OkStatus();
}

}  // namespace diyc::netcore
