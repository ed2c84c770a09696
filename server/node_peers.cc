// Node: networks that span nodes over VXLAN, and their peers.
#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/vxlan.h"
#include "fault.h"
#include "host_socket.h"
#include "names.h"
#include "node.h"
#include "request_validation.h"

namespace diyc::server {

using netcore::IpAddress;
using netcore::Quote;

absl::Status Node::EnsureVxlan(const NetworkState& state, int bridge_index) {
  if (!state.network.has_vxlan()) return absl::OkStatus();
  const v1::Vxlan& vxlan = state.network.vxlan();
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  DIYC_ASSIGN_OR_RETURN(IpAddress local, IpAddress::Parse(vxlan.local()));
  const std::string owner = OwnerAlias(instance_, state.network.name());

  DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> existing, netcore::FindLink(*host, vxlan.device()));
  bool created = false;
  int index = 0;
  if (existing) {
    if (existing->kind != "vxlan" || existing->alias != owner) {
      return absl::FailedPreconditionError(absl::StrCat("interface ", Quote(vxlan.device()),
                                                        " exists and is not the VXLAN link of network ",
                                                        Quote(state.network.name())));
    }
    index = existing->index;
    if (existing->master_index != bridge_index || !existing->up) {
      DIYC_RETURN_IF_ERROR(netcore::ChangeLink(*host, index, {.master_index = bridge_index, .up = true}));
    }
  } else {
    int underlay_index = 0;
    if (!vxlan.underlay_device().empty()) {
      DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> underlay, netcore::FindLink(*host, vxlan.underlay_device()));
      if (underlay) underlay_index = underlay->index;
    }
    DIYC_ASSIGN_OR_RETURN(netcore::LinkInfo link,
                          netcore::CreateVxlan(*host, {.name = vxlan.device(),
                                                       .id = vxlan.id(),
                                                       .port = static_cast<uint16_t>(vxlan.port()),
                                                       .local = local,
                                                       .underlay_index = underlay_index,
                                                       .mtu = state.network.mtu(),
                                                       .master_index = bridge_index,
                                                       .alias = owner}));
    index = link.index;
    created = true;
  }
  absl::Cleanup remove = [&] {
    if (created) (void)netcore::DeleteLinkIfExists(*host, index);
  };
  for (const std::string& peer : state.network.peers()) {
    DIYC_ASSIGN_OR_RETURN(IpAddress address, IpAddress::Parse(peer));
    DIYC_RETURN_IF_ERROR(netcore::AddVxlanFloodPeer(*host, index, address));
  }
  // A removal that a crash cut short leaves its peer's entries behind.
  DIYC_ASSIGN_OR_RETURN(std::vector<IpAddress> stale, StaleVxlanPeers(*host, state.network, index));
  for (const IpAddress& address : stale) DIYC_RETURN_IF_ERROR(netcore::RemoveVxlanPeer(*host, index, address));
  std::move(remove).Cancel();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<IpAddress>> Node::StaleVxlanPeers(netcore::NlSocket& host, const v1::Network& network,
                                                               int vxlan_index) {
  DIYC_ASSIGN_OR_RETURN(std::vector<netcore::FdbEntry> fdb, netcore::ListVxlanFdb(host, vxlan_index));
  std::vector<IpAddress> stale;
  for (const netcore::FdbEntry& entry : fdb) {
    const std::string dst = entry.dst.ToString();
    if (std::find(network.peers().begin(), network.peers().end(), dst) != network.peers().end()) continue;
    if (std::find(stale.begin(), stale.end(), entry.dst) == stale.end()) stale.push_back(entry.dst);
  }
  return stale;
}

namespace {

// The network's VXLAN link, which a peer change needs.
absl::StatusOr<int> VxlanIndex(const v1::Network& network) {
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> link, netcore::FindLink(*host, network.vxlan().device()));
  if (!link) {
    return absl::FailedPreconditionError(absl::StrCat("the VXLAN link ", Quote(network.vxlan().device()),
                                                      " of network ", Quote(network.name()),
                                                      " is missing; Repair re-creates it"));
  }
  return link->index;
}

}  // namespace

absl::StatusOr<v1::Network> Node::SpanningNetwork(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = networks_.find(name);
  if (it == networks_.end() || it->second.phase == v1::NetworkRecord::CREATING) {
    return absl::NotFoundError(absl::StrCat("network ", Quote(name), " not found"));
  }
  if (it->second.phase != v1::NetworkRecord::READY) {
    return absl::FailedPreconditionError(absl::StrCat("network ", Quote(name), " is being deleted"));
  }
  if (!it->second.network.has_vxlan()) {
    return absl::FailedPreconditionError(absl::StrCat("network ", Quote(name), " does not span nodes"));
  }
  return it->second.network;
}

absl::StatusOr<v1::Network> Node::AddPeer(const v1::AddPeerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  std::lock_guard<std::mutex> peers_lock(peers_mu_);
  DIYC_ASSIGN_OR_RETURN(v1::Network network, SpanningNetwork(request.network()));
  DIYC_ASSIGN_OR_RETURN(IpAddress local, IpAddress::Parse(network.vxlan().local()));
  DIYC_ASSIGN_OR_RETURN(IpAddress peer, ParseVxlanPeer(request.address(), local));
  DIYC_ASSIGN_OR_RETURN(int vxlan_index, VxlanIndex(network));
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  const std::string address = peer.ToString();
  const bool known = std::find(network.peers().begin(), network.peers().end(), address) != network.peers().end();
  if (!known) {
    // Recorded first: a crash after this is completed by the next start.
    v1::NetworkRecord record;
    *record.mutable_network() = network;
    record.mutable_network()->add_peers(address);
    record.set_phase(v1::NetworkRecord::READY);
    DIYC_RETURN_IF_ERROR(store_->PutNetwork(record));
    FaultPoint("peer.add.recorded");
    auto set_peers = [&](const v1::Network& from) {
      std::lock_guard<std::mutex> lock(mu_);
      *networks_.at(network.name()).network.mutable_peers() = from.peers();
    };
    set_peers(record.network());
    absl::Cleanup undo = [&] {
      set_peers(network);
      v1::NetworkRecord old;
      *old.mutable_network() = network;
      old.set_phase(v1::NetworkRecord::READY);
      (void)store_->PutNetwork(old);
      (void)netcore::RemoveVxlanPeer(*host, vxlan_index, peer);
      (void)ApplyFirewall();
    };
    // The firewall lets the peer in before anything is sent its way.
    DIYC_RETURN_IF_ERROR(ApplyFirewall());
    DIYC_RETURN_IF_ERROR(netcore::AddVxlanFloodPeer(*host, vxlan_index, peer));
    std::move(undo).Cancel();
  } else {
    DIYC_RETURN_IF_ERROR(netcore::AddVxlanFloodPeer(*host, vxlan_index, peer));
  }
  v1::GetNetworkRequest get;
  get.set_name(network.name());
  return GetNetwork(get);
}

absl::StatusOr<v1::Network> Node::RemovePeer(const v1::RemovePeerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  std::lock_guard<std::mutex> peers_lock(peers_mu_);
  DIYC_ASSIGN_OR_RETURN(v1::Network network, SpanningNetwork(request.network()));
  DIYC_ASSIGN_OR_RETURN(IpAddress peer, IpAddress::Parse(request.address()));
  const std::string address = peer.ToString();
  v1::NetworkRecord record;
  *record.mutable_network() = network;
  record.mutable_network()->clear_peers();
  for (const std::string& p : network.peers()) {
    if (p != address) record.mutable_network()->add_peers(p);
  }
  record.set_phase(v1::NetworkRecord::READY);
  if (record.network().peers_size() != network.peers_size()) {
    DIYC_RETURN_IF_ERROR(store_->PutNetwork(record));
    FaultPoint("peer.remove.recorded");
    std::lock_guard<std::mutex> lock(mu_);
    *networks_.at(network.name()).network.mutable_peers() = record.network().peers();
  }
  // Past the record the removal only goes forward (a failure here is
  // reported, and the next Repair or start finishes it): nothing from the
  // peer is let in, then nothing is sent its way.
  DIYC_RETURN_IF_ERROR(ApplyFirewall());
  DIYC_ASSIGN_OR_RETURN(int vxlan_index, VxlanIndex(network));
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  DIYC_RETURN_IF_ERROR(netcore::RemoveVxlanPeer(*host, vxlan_index, peer));
  v1::GetNetworkRequest get;
  get.set_name(network.name());
  return GetNetwork(get);
}

}  // namespace diyc::server
