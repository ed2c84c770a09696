// Node: bringing the kernel back in line with the records at start.
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/status_macros.h"
#include "host_socket.h"
#include "names.h"
#include "node.h"

namespace diyc::server {

using netcore::IpPrefix;
using netcore::Quote;

namespace {

// True when the namespace still holds the attachment's interface with its
// address: the attach got past its last kernel step.
bool AttachmentComplete(const netcore::Netns& ns, const v1::Attachment& a) {
  absl::StatusOr<netcore::NlSocket> inside = netcore::NlSocket::OpenIn(ns);
  if (!inside.ok()) return false;
  absl::StatusOr<netcore::LinkInfo> peer = netcore::GetLink(*inside, a.ifname());
  if (!peer.ok() || peer->kind != "veth" || !peer->up) return false;
  absl::StatusOr<IpPrefix> ip = IpPrefix::Parse(a.ip());
  absl::StatusOr<std::vector<netcore::AddrInfo>> addrs = netcore::ListAddresses(*inside, peer->index);
  if (!ip.ok() || !addrs.ok()) return false;
  return std::any_of(addrs->begin(), addrs->end(), [&](const netcore::AddrInfo& x) { return x.prefix == *ip; });
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Node::Reconcile() {
  std::vector<std::string> report;
  DIYC_ASSIGN_OR_RETURN(StateStore::Contents contents, store_->Load());
  for (std::string& line : contents.quarantined) report.push_back(absl::StrCat("quarantined ", line));
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());

  const std::string our_mark = absl::StrCat(kOwnerAliasPrefix, instance_, ":");
  // recorded_veth: the name comes from our own intent record, and a crash
  // between creating the veth and marking it leaves it without an alias.
  auto delete_owned_link = [&](const std::string& name, bool recorded_veth = false) {
    absl::StatusOr<std::optional<netcore::LinkInfo>> link = netcore::FindLink(*host, name);
    if (!link.ok() || !link->has_value()) return;
    const bool unmarked_recorded = recorded_veth && (*link)->alias.empty() && (*link)->kind == "veth";
    if (!absl::StartsWith((*link)->alias, our_mark) && !unmarked_recorded) {
      report.push_back(absl::StrCat("left ", Quote(name), " alone: it does not carry diyc's mark"));
      return;
    }
    (void)netcore::DeleteLinkIfExists(*host, (*link)->index);
  };

  // Networks first: attachments need their network's state.
  std::set<std::string> deleting;
  for (const v1::NetworkRecord& record : contents.networks) {
    const v1::Network& n = record.network();
    if (record.phase() == v1::NetworkRecord::CREATING) {
      delete_owned_link(n.bridge());
      if (n.has_vxlan()) delete_owned_link(n.vxlan().device());
      (void)store_->DeleteNetwork(n.name());
      report.push_back(absl::StrCat("rolled back interrupted create of network ", Quote(n.name())));
      continue;
    }
    if (record.phase() == v1::NetworkRecord::DELETING) {
      deleting.insert(n.name());
      continue;
    }
    absl::StatusOr<NetworkState> state = StateFromRecord(n);
    if (!state.ok()) {
      report.push_back(absl::StrCat("ignored network record ", Quote(n.name()), ": ", state.status().message()));
      continue;
    }
    state->phase = v1::NetworkRecord::READY;
    absl::StatusOr<std::optional<netcore::LinkInfo>> bridge = netcore::FindLink(*host, n.bridge());
    if (bridge.ok() && !bridge->has_value()) {
      absl::StatusOr<int> made = MakeNetworkKernelObjects(*state);
      if (made.ok()) state->bridge_index = *made;
      report.push_back(made.ok() ? absl::StrCat("re-created bridge ", Quote(n.bridge()), " of network ", Quote(n.name()))
                                 : absl::StrCat("could not re-create bridge of network ", Quote(n.name()), ": ",
                                                made.status().message()));
    } else if (bridge.ok()) {
      state->bridge_index = (*bridge)->index;
      (void)netcore::SetLinkUp(*host, (*bridge)->index, true);
      absl::Status addr = netcore::AddAddress(*host, (*bridge)->index, IpPrefix(state->gateway, state->subnet.prefix_len()));
      if (addr.ok()) report.push_back(absl::StrCat("restored gateway address on bridge ", Quote(n.bridge())));
      // The data path of a spanning network never stops for a restart: an
      // intact VXLAN link is left as it is, a missing peer entry re-added.
      if (absl::Status vxlan = EnsureVxlan(*state, (*bridge)->index); !vxlan.ok()) {
        report.push_back(absl::StrCat("could not restore the VXLAN link of network ", Quote(n.name()), ": ",
                                      vxlan.message()));
      }
    }
    networks_.emplace(n.name(), *std::move(state));
  }

  for (const v1::AttachmentRecord& record : contents.attachments) {
    const v1::Attachment& a = record.attachment();
    const std::string label = absl::StrCat(TargetOf(a).Label(), " on network ", Quote(a.network()));
    auto drop = [&](absl::string_view why) {
      delete_owned_link(a.host_ifname(), /*recorded_veth=*/true);
      (void)store_->DeleteAttachment(a.host_ifname());
      report.push_back(absl::StrCat("released ", label, " (", a.ip(), "): ", why));
    };
    auto network = networks_.find(a.network());
    if (network == networks_.end()) {
      drop(deleting.count(a.network()) ? "its network is being deleted" : "its network does not exist");
      continue;
    }
    if (record.boot_id() != boot_id_) {
      drop("recorded before the last reboot");
      continue;
    }
    if (absl::StatusOr<std::optional<netcore::LinkInfo>> veth = netcore::FindLink(*host, a.host_ifname());
        veth.ok() && veth->has_value() && (*veth)->group == reaper_->group()) {
      drop("a detach was interrupted");  // its veth was already retired
      continue;
    }
    absl::StatusOr<netcore::Netns> ns = OpenTarget(TargetOf(a), options_.containers);
    struct stat st;
    if (!ns.ok() || fstat(ns->fd(), &st) != 0 || st.st_dev != record.netns_dev() || st.st_ino != record.netns_ino()) {
      drop("its namespace is gone");
      continue;
    }
    if (!AttachmentComplete(*ns, a)) {
      drop("the attach was interrupted");
      continue;
    }
    absl::StatusOr<IpPrefix> ip = IpPrefix::Parse(a.ip());
    if (!ip.ok() || !network->second.ipam->Reserve(ip->address()).ok()) {
      drop("its address is taken by another attachment");
      continue;
    }
    // Repair the host end's place on the bridge if someone moved it.
    if (absl::StatusOr<netcore::LinkInfo> bridge = netcore::GetLink(*host, network->second.network.bridge());
        bridge.ok()) {
      (void)netcore::ChangeLink(*host, a.host_ifname(), {.master_index = bridge->index, .up = true});
    }
    ++network->second.attachments;
    attachments_[a.host_ifname()] = {record, AttachPhase::kReady};
  }

  for (const std::string& name : deleting) {
    auto it = std::find_if(contents.networks.begin(), contents.networks.end(),
                           [&](const v1::NetworkRecord& r) { return r.network().name() == name; });
    delete_owned_link(it->network().bridge());
    if (it->network().has_vxlan()) delete_owned_link(it->network().vxlan().device());
    (void)store_->DeleteNetwork(name);
    report.push_back(absl::StrCat("finished interrupted delete of network ", Quote(name)));
  }

  // Veths retired but not yet deleted when diycd stopped.
  if (absl::Status reaped = reaper_->Flush(); !reaped.ok()) {
    report.push_back(absl::StrCat("could not delete retired links: ", reaped.message()));
  }
  // Links with diyc's mark that no record explains are leftovers of a crash.
  DIYC_ASSIGN_OR_RETURN(std::vector<netcore::LinkInfo> links, netcore::ListLinks(*host));
  std::set<std::string> known;
  for (const auto& [name, state] : networks_) {
    known.insert(state.network.bridge());
    if (state.network.has_vxlan()) known.insert(state.network.vxlan().device());
  }
  for (const auto& [name, state] : attachments_) known.insert(name);
  for (const netcore::LinkInfo& link : links) {
    if (!absl::StartsWith(link.alias, our_mark) || known.count(link.name)) continue;
    (void)netcore::DeleteLinkIfExists(*host, link.index);
    report.push_back(absl::StrCat("deleted orphaned link ", Quote(link.name), " (", link.alias, ")"));
  }

  DIYC_RETURN_IF_ERROR(ApplyFirewall());
  return report;
}

}  // namespace diyc::server
