// Node: finding and repairing drift between the records and the kernel.
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/sysctl.h"
#include "diyc/netcore/vxlan.h"
#include "host_socket.h"
#include "names.h"
#include "node.h"

namespace diyc::server {

using netcore::IpPrefix;
using netcore::Quote;

namespace {

v1::Drift MakeDrift(v1::Drift::Kind kind, const std::string& network, const std::string& attachment,
                    std::string detail) {
  v1::Drift d;
  d.set_kind(kind);
  d.set_network(network);
  d.set_attachment(attachment);
  d.set_detail(std::move(detail));
  return d;
}

}  // namespace

void Node::InspectVxlan(netcore::NlSocket& host, const NetworkState& state, int bridge_index, const DriftSink& found,
                        bool repair) {
  const std::string& name = state.network.name();
  const std::string& device = state.network.vxlan().device();
  absl::StatusOr<std::optional<netcore::LinkInfo>> link = netcore::FindLink(host, device);
  if (!link.ok()) return;
  if (!link->has_value() || (*link)->master_index != bridge_index || !(*link)->up) {
    found(MakeDrift(v1::Drift::VXLAN_MISSING, name, "",
                    absl::StrCat("VXLAN link ", Quote(device), link->has_value() ? " is down or off its bridge"
                                                                                  : " is missing")),
          repair ? EnsureVxlan(state, bridge_index) : absl::OkStatus(),
          absl::StrCat("restored VXLAN link ", Quote(device), " with its peers"));
    return;
  }
  absl::StatusOr<std::vector<netcore::FdbEntry>> fdb = netcore::ListVxlanFdb(host, (*link)->index);
  if (!fdb.ok()) return;
  for (const std::string& peer : state.network.peers()) {
    absl::StatusOr<netcore::IpAddress> address = netcore::IpAddress::Parse(peer);
    if (!address.ok()) continue;
    const bool present = std::any_of(fdb->begin(), fdb->end(), [&](const netcore::FdbEntry& e) {
      return e.mac == "00:00:00:00:00:00" && e.dst == *address;
    });
    if (present) continue;
    found(MakeDrift(v1::Drift::VXLAN_PEER_MISSING, name, "",
                    absl::StrCat("peer ", peer, " has no flooding entry on ", Quote(device))),
          repair ? netcore::AddVxlanFloodPeer(host, (*link)->index, *address) : absl::OkStatus(),
          absl::StrCat("re-added the flooding entry for ", peer));
  }
  absl::StatusOr<std::vector<netcore::IpAddress>> stale = StaleVxlanPeers(host, state.network, (*link)->index);
  if (!stale.ok()) return;
  for (const netcore::IpAddress& address : *stale) {
    found(MakeDrift(v1::Drift::VXLAN_PEER_STALE, name, "",
                    absl::StrCat(Quote(device), " still sends to ", address.ToString(), ", which is no peer")),
          repair ? netcore::RemoveVxlanPeer(host, (*link)->index, address) : absl::OkStatus(),
          absl::StrCat("removed the entries towards ", address.ToString()));
  }
}

absl::StatusOr<v1::RepairResponse> Node::Inspect(bool repair) {
  v1::RepairResponse out;
  DriftSink found = [&](v1::Drift drift, absl::Status action, absl::string_view done) {
    *out.add_drifts() = drift;
    if (repair) out.add_actions(action.ok() ? std::string(done) : absl::StrCat("failed: ", action.message()));
  };
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());

  std::vector<std::pair<std::string, NetworkState>> networks;
  std::vector<v1::AttachmentRecord> attachments;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, state] : networks_) {
      if (state.phase == v1::NetworkRecord::READY) networks.emplace_back(name, state);
    }
    for (const auto& [name, state] : attachments_) {
      if (state.phase == AttachPhase::kReady) attachments.push_back(state.record);
    }
  }

  bool forwarding = false;
  for (auto& [name, state] : networks) {
    forwarding |= !state.network.internal();
    const std::string& bridge_name = state.network.bridge();
    DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> bridge, netcore::FindLink(*host, bridge_name));
    if (!bridge) {
      absl::StatusOr<int> made = repair ? MakeNetworkKernelObjects(state) : absl::StatusOr<int>(0);
      if (repair && made.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = networks_.find(name); it != networks_.end()) it->second.bridge_index = *made;
      }
      found(MakeDrift(v1::Drift::BRIDGE_MISSING, name, "", absl::StrCat("bridge ", Quote(bridge_name), " is missing")),
            made.status(), absl::StrCat("re-created bridge ", Quote(bridge_name)));
      continue;
    }
    if (bridge->index != state.bridge_index) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = networks_.find(name); it != networks_.end()) it->second.bridge_index = bridge->index;
    }
    if (!bridge->up) {
      found(MakeDrift(v1::Drift::BRIDGE_DOWN, name, "", absl::StrCat("bridge ", Quote(bridge_name), " is down")),
            repair ? netcore::SetLinkUp(*host, bridge->index, true) : absl::OkStatus(), "brought the bridge up");
    }
    const IpPrefix gateway(state.gateway, state.subnet.prefix_len());
    DIYC_ASSIGN_OR_RETURN(std::vector<netcore::AddrInfo> addrs, netcore::ListAddresses(*host, bridge->index));
    if (std::none_of(addrs.begin(), addrs.end(), [&](const netcore::AddrInfo& a) { return a.prefix == gateway; })) {
      found(MakeDrift(v1::Drift::GATEWAY_ADDRESS_MISSING, name, "",
                      absl::StrCat("gateway ", gateway.ToString(), " is missing on ", Quote(bridge_name))),
            repair ? netcore::AddAddress(*host, bridge->index, gateway) : absl::OkStatus(),
            absl::StrCat("re-added ", gateway.ToString()));
    }
    if (state.network.has_vxlan()) InspectVxlan(*host, state, bridge->index, found, repair);
  }

  if (forwarding) {
    absl::StatusOr<std::string> value = netcore::ReadSysctl(nullptr, "net.ipv4.ip_forward");
    if (value.ok() && *value != "1") {
      found(MakeDrift(v1::Drift::IP_FORWARD_OFF, "", "", "net.ipv4.ip_forward is 0"),
            repair ? netcore::WriteSysctl(nullptr, "net.ipv4.ip_forward", "1") : absl::OkStatus(),
            "set net.ipv4.ip_forward=1");
    }
  }

  std::vector<netcore::FirewallNetwork> rules;
  for (const auto& [name, state] : networks) rules.push_back(FirewallRulesOf(state));
  std::vector<std::string> firewall_drift;
  {
    std::lock_guard<std::mutex> fw_lock(firewall_mu_);
    DIYC_ASSIGN_OR_RETURN(firewall_drift, options_.firewall->Check(rules));
  }
  if (!firewall_drift.empty()) {
    absl::Status applied = repair ? ApplyFirewall() : absl::OkStatus();
    for (size_t i = 0; i < firewall_drift.size(); ++i) {
      found(MakeDrift(v1::Drift::FIREWALL, "", "", firewall_drift[i]), applied,
            i == 0 ? "re-applied the firewall ruleset" : "(same)");
    }
  }
  for (const v1::AttachmentRecord& record : attachments) {
    const v1::Attachment& a = record.attachment();
    const std::string label = absl::StrCat(TargetOf(a).Label(), " (", a.ip(), ")");
    absl::StatusOr<netcore::Netns> ns = OpenTarget(TargetOf(a), options_.containers);
    struct stat st;
    const bool alive = ns.ok() && fstat(ns->fd(), &st) == 0 && st.st_dev == record.netns_dev() &&
                       st.st_ino == record.netns_ino();
    if (!alive) {
      found(MakeDrift(v1::Drift::NAMESPACE_GONE, a.network(), a.host_ifname(),
                      absl::StrCat("the namespace of ", label, " is gone")),
            repair ? Unwire(a.host_ifname()) : absl::OkStatus(), absl::StrCat("released ", label));
      continue;
    }
    DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> veth, netcore::FindLink(*host, a.host_ifname()));
    if (!veth) {
      // The pair died with its host end: wire it again exactly as recorded.
      absl::Status rewired = absl::OkStatus();
      if (repair) {
        NetworkState network;
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = networks_.find(a.network());
          if (it != networks_.end()) network = it->second;
        }
        v1::Attachment copy = a;
        rewired = WireAttachment(network, *ns, &copy);
      }
      found(MakeDrift(v1::Drift::HOST_VETH_MISSING, a.network(), a.host_ifname(),
                      absl::StrCat("host veth ", Quote(a.host_ifname()), " of ", label, " is missing")),
            rewired, absl::StrCat("re-created the veth pair of ", label));
      continue;
    }
    int bridge_index = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = networks_.find(a.network()); it != networks_.end()) bridge_index = it->second.bridge_index;
    }
    if (veth->master_index != bridge_index || !veth->up) {
      found(MakeDrift(v1::Drift::HOST_VETH_DETACHED, a.network(), a.host_ifname(),
                      absl::StrCat("host veth ", Quote(a.host_ifname()), " is down or off its bridge")),
            repair ? netcore::ChangeLink(*host, veth->index, {.master_index = bridge_index, .up = true})
                   : absl::OkStatus(),
            "put it back on the bridge, up");
    }
  }
  return out;
}

absl::StatusOr<v1::CheckResponse> Node::Check() {
  DIYC_ASSIGN_OR_RETURN(v1::RepairResponse inspected, Inspect(/*repair=*/false));
  v1::CheckResponse response;
  *response.mutable_drifts() = inspected.drifts();
  return response;
}

absl::StatusOr<v1::RepairResponse> Node::Repair() { return Inspect(/*repair=*/true); }

}  // namespace diyc::server
