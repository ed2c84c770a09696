// Node: opening, and the network verbs.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/route.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/sysctl.h"
#include "diyc/netcore/validate.h"
#include "diyc/netcore/vxlan.h"
#include "google/protobuf/util/time_util.h"
#include "host_socket.h"
#include "fault.h"
#include "names.h"
#include "request_validation.h"
#include "node.h"

namespace diyc::server {

using netcore::IpAddress;
using netcore::IpPrefix;
using netcore::Quote;

namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

std::string ReadBootId() {
  absl::StatusOr<std::string> id = netcore::ReadSysctl(nullptr, "kernel.random.boot_id");
  return id.ok() ? *id : "";
}

absl::StatusOr<int> PageSize(int32_t requested) {
  if (requested < 0) return absl::InvalidArgumentError("page_size must not be negative");
  if (requested == 0) return kDefaultPageSize;
  return std::min<int>(requested, kMaxPageSize);
}

// MTU of the interface holding the host's IPv4 default route, else 1500.
uint32_t DefaultMtu(netcore::NlSocket& host) {
  absl::StatusOr<std::vector<netcore::RouteInfo>> routes = netcore::ListRoutes(host, netcore::IpFamily::kV4);
  if (routes.ok()) {
    for (const netcore::RouteInfo& r : *routes) {
      if (r.dst.prefix_len() != 0 || r.oif == 0) continue;
      absl::StatusOr<netcore::LinkInfo> link = netcore::GetLink(host, r.oif);
      if (link.ok() && link->mtu >= 1280) return link->mtu;
    }
  }
  return 1500;
}

}  // namespace

absl::StatusOr<Node::Underlay> Node::ResolveUnderlay(netcore::NlSocket& host, const NetworkPlan::Vxlan& vxlan) {
  DIYC_ASSIGN_OR_RETURN(std::vector<netcore::AddrInfo> addrs,
                        netcore::ListAddresses(host, std::nullopt, netcore::IpFamily::kV4));
  int index = 0;
  Underlay underlay;
  if (!vxlan.underlay_device.empty()) {
    DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> device, netcore::FindLink(host, vxlan.underlay_device));
    if (!device) {
      return absl::FailedPreconditionError(
          absl::StrCat("underlay device ", Quote(vxlan.underlay_device), " does not exist on this node"));
    }
    index = device->index;
  }
  if (vxlan.local) {
    auto it = std::find_if(addrs.begin(), addrs.end(), [&](const netcore::AddrInfo& a) {
      return a.prefix.address() == *vxlan.local && (index == 0 || a.ifindex == index);
    });
    if (it == addrs.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "VXLAN local address ", vxlan.local->ToString(), " is not an address of ",
          index == 0 ? std::string("this node") : Quote(vxlan.underlay_device)));
    }
    index = it->ifindex;
    underlay.local = *vxlan.local;
  } else {
    auto it = std::find_if(addrs.begin(), addrs.end(), [&](const netcore::AddrInfo& a) { return a.ifindex == index; });
    if (it == addrs.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("underlay device ", Quote(vxlan.underlay_device), " has no IPv4 address"));
    }
    underlay.local = it->prefix.address();
  }
  DIYC_ASSIGN_OR_RETURN(netcore::LinkInfo device, netcore::GetLink(host, index));
  underlay.device = device.name;
  underlay.mtu = device.mtu;
  if (underlay.mtu < 1280 + netcore::kVxlanOverhead) {
    return absl::FailedPreconditionError(absl::StrCat("underlay device ", Quote(device.name), " has MTU ", device.mtu,
                                                      ": too small to carry VXLAN"));
  }
  return underlay;
}

absl::StatusOr<std::unique_ptr<Node>> Node::Open(NodeOptions options) {
  DIYC_ASSIGN_OR_RETURN(std::unique_ptr<StateStore> store, StateStore::Open(options.state_dir));
  if (!options.firewall) options.firewall = netcore::MakeNftablesFirewall();
  return std::unique_ptr<Node>(new Node(std::move(options), std::move(store)));
}

Node::Node(NodeOptions options, std::unique_ptr<StateStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      boot_id_(ReadBootId()),
      instance_(InstanceId(store_->dir())),
      reaper_(std::make_unique<LinkReaper>(ReaperGroupFor(instance_))) {}

Node::~Node() { events_.Close(); }

v1::Network Node::Snapshot(const NetworkState& state) const {
  v1::Network network = state.network;
  network.set_attachment_count(state.attachments);
  return network;
}

void Node::Publish(v1::Event::Type type, const std::string& network, const v1::Attachment* attachment) {
  v1::Event event;
  event.set_type(type);
  *event.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  event.set_network(network);
  if (attachment != nullptr) *event.mutable_attachment() = *attachment;
  events_.Publish(event);
}

Node::NetworkState Node::StateFromPlan(const NetworkPlan& plan, Ipam ipam) {
  NetworkState state;
  v1::Network& n = state.network;
  n.set_name(plan.name);
  state.subnet = plan.subnet;
  state.gateway = plan.gateway;
  state.ipam.emplace(std::move(ipam));
  n.set_subnet(plan.subnet.ToString());
  n.set_gateway(plan.gateway.ToString());
  if (plan.subnet6) {
    state.subnet6 = plan.subnet6;
    state.gateway6 = plan.gateway6;
    n.set_subnet6(plan.subnet6->ToString());
    n.set_gateway6(plan.gateway6->ToString());
  }
  if (plan.ip_range) n.set_ip_range(plan.ip_range->ToString());
  n.set_bridge(plan.bridge);
  n.set_internal(plan.internal);
  n.set_nat(plan.nat);
  n.set_mtu(plan.mtu);
  if (plan.vxlan) {
    v1::Vxlan& vxlan = *n.mutable_vxlan();
    vxlan.set_id(plan.vxlan->id);
    vxlan.set_port(plan.vxlan->port);
    if (plan.vxlan->local) vxlan.set_local(plan.vxlan->local->ToString());
    vxlan.set_underlay_device(plan.vxlan->underlay_device);
    vxlan.set_device(VxlanDeviceName(plan.vxlan->id));
    for (const IpAddress& peer : plan.vxlan->peers) n.add_peers(peer.ToString());
  }
  return state;
}

absl::StatusOr<Node::NetworkState> Node::PlanNetwork(const v1::CreateNetworkRequest& request) {
  DIYC_ASSIGN_OR_RETURN(NetworkPlan plan, PlanNetworkRequest(request));
  DIYC_ASSIGN_OR_RETURN(Ipam ipam, Ipam::Create(plan.subnet, plan.gateway, plan.ip_range));
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  if (plan.vxlan) {
    DIYC_ASSIGN_OR_RETURN(Underlay underlay, ResolveUnderlay(*host, *plan.vxlan));
    plan.vxlan->local = underlay.local;
    plan.vxlan->underlay_device = underlay.device;
    const uint32_t max_mtu = underlay.mtu - netcore::kVxlanOverhead;
    if (plan.mtu > max_mtu) {
      return absl::InvalidArgumentError(absl::StrCat("mtu ", plan.mtu, " does not fit VXLAN over ",
                                                     Quote(underlay.device), " (MTU ", underlay.mtu, "): at most ",
                                                     max_mtu));
    }
    if (plan.mtu == 0) plan.mtu = max_mtu;
  } else if (plan.mtu == 0) {
    plan.mtu = DefaultMtu(*host);
  }
  NetworkState state = StateFromPlan(plan, std::move(ipam));
  *state.network.mutable_created_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return state;
}

absl::StatusOr<Node::NetworkState> Node::StateFromRecord(const v1::Network& recorded) {
  // The record is the truth: nothing is re-derived from the host, which may
  // have changed (an underlay MTU, a moved address) since it was made.
  v1::CreateNetworkRequest request;
  request.set_name(recorded.name());
  request.set_subnet(recorded.subnet());
  request.set_subnet6(recorded.subnet6());
  request.set_gateway(recorded.gateway());
  request.set_bridge(recorded.bridge());
  request.set_nat(recorded.nat());
  request.set_internal(recorded.internal());
  request.set_mtu(recorded.mtu());
  request.set_ip_range(recorded.ip_range());
  if (recorded.has_vxlan()) *request.mutable_vxlan() = recorded.vxlan();
  *request.mutable_peers() = recorded.peers();
  DIYC_ASSIGN_OR_RETURN(NetworkPlan plan, PlanNetworkRequest(request));
  DIYC_ASSIGN_OR_RETURN(Ipam ipam, Ipam::Create(plan.subnet, plan.gateway, plan.ip_range));
  NetworkState state = StateFromPlan(plan, std::move(ipam));
  state.network.set_mtu(recorded.mtu());
  if (recorded.has_vxlan()) *state.network.mutable_vxlan() = recorded.vxlan();
  *state.network.mutable_created_at() = recorded.created_at();
  return state;
}

absl::Status Node::CheckHostConflicts(const NetworkState& planned) {
  const IpPrefix& subnet = planned.subnet;
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  std::vector<std::string> links = {planned.network.bridge()};
  if (planned.network.has_vxlan()) links.push_back(planned.network.vxlan().device());
  for (const std::string& link : links) {
    DIYC_ASSIGN_OR_RETURN(std::optional<netcore::LinkInfo> existing, netcore::FindLink(*host, link));
    if (existing) {
      return absl::AlreadyExistsError(absl::StrCat("interface ", Quote(link), " already exists on the host"));
    }
  }
  DIYC_ASSIGN_OR_RETURN(std::vector<netcore::AddrInfo> addrs,
                        netcore::ListAddresses(*host, std::nullopt, netcore::IpFamily::kV4));
  for (const netcore::AddrInfo& a : addrs) {
    if (a.prefix.Network().Overlaps(subnet)) {
      return absl::FailedPreconditionError(absl::StrCat("subnet ", subnet.ToString(), " overlaps host address ",
                                                        a.prefix.ToString(), " (link #", a.ifindex, ")"));
    }
  }
  DIYC_ASSIGN_OR_RETURN(std::vector<netcore::RouteInfo> routes, netcore::ListRoutes(*host, netcore::IpFamily::kV4));
  for (const netcore::RouteInfo& r : routes) {
    if (r.dst.prefix_len() == 0) continue;
    if (r.dst.Overlaps(subnet)) {
      return absl::FailedPreconditionError(
          absl::StrCat("subnet ", subnet.ToString(), " overlaps host route ", r.dst.ToString()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Node::MakeNetworkKernelObjects(const NetworkState& state) {
  const v1::Network& n = state.network;
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  netcore::BridgeOptions options{.name = n.bridge(), .mtu = n.mtu(), .up = true,
                                 .alias = OwnerAlias(instance_, n.name()), .mac = NewMacAddress()};
  DIYC_ASSIGN_OR_RETURN(netcore::LinkInfo bridge, netcore::CreateBridge(*host, options));
  absl::Cleanup remove_bridge = [&] { (void)netcore::DeleteLinkIfExists(*host, bridge.index); };
  if (!state.subnet6) {
    // Without IPv6 the bridge needs no link-local: it would only add
    // multicast chatter to every port.
    DIYC_RETURN_IF_ERROR(netcore::ChangeLink(*host, bridge.index, {.no_ipv6_addrgen = true}));
  }
  DIYC_RETURN_IF_ERROR(
      netcore::AddAddress(*host, bridge.index, IpPrefix(state.gateway, state.subnet.prefix_len())));
  if (state.subnet6) {
    DIYC_RETURN_IF_ERROR(netcore::AddAddress(*host, bridge.index, IpPrefix(*state.gateway6, state.subnet6->prefix_len()),
                                             {.no_dad = true}));
  }
  DIYC_RETURN_IF_ERROR(EnsureVxlan(state, bridge.index));
  std::move(remove_bridge).Cancel();
  return bridge.index;
}

netcore::FirewallNetwork Node::FirewallRulesOf(const NetworkState& state) {
  netcore::FirewallNetwork rules{.name = state.network.name(), .bridge = state.network.bridge(),
                                 .subnet = state.subnet, .subnet6 = state.subnet6, .nat = state.network.nat(),
                                 .internal = state.network.internal()};
  if (state.network.has_vxlan()) {
    rules.vxlan_port = static_cast<uint16_t>(state.network.vxlan().port());
    for (const std::string& peer : state.network.peers()) {
      if (absl::StatusOr<IpAddress> address = IpAddress::Parse(peer); address.ok()) rules.vxlan_peers.push_back(*address);
    }
  }
  return rules;
}

absl::Status Node::ApplyFirewall() {
  std::lock_guard<std::mutex> fw_lock(firewall_mu_);
  std::vector<netcore::FirewallNetwork> rules;
  bool forwarding = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, state] : networks_) {
      if (state.phase == v1::NetworkRecord::DELETING) continue;
      rules.push_back(FirewallRulesOf(state));
      forwarding |= !state.network.internal();
    }
  }
  DIYC_RETURN_IF_ERROR(netcore::Annotate(options_.firewall->Apply(rules), "apply firewall"));
  if (forwarding) {
    // Left on when the last network goes: other software may rely on it.
    DIYC_RETURN_IF_ERROR(netcore::WriteSysctl(nullptr, "net.ipv4.ip_forward", "1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Network> Node::CreateNetwork(const v1::CreateNetworkRequest& request) {
  // Everything the firewall and IPAM would refuse later, refused before
  // anything is recorded or made.
  DIYC_RETURN_IF_ERROR(ValidateCreateNetworkRequest(request));
  DIYC_ASSIGN_OR_RETURN(NetworkState planned, PlanNetwork(request));
  const std::string name = planned.network.name();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (networks_.count(name)) return absl::AlreadyExistsError(absl::StrCat("network ", Quote(name), " already exists"));
    for (const auto& [other_name, other] : networks_) {
      if (other.network.bridge() == planned.network.bridge()) {
        return absl::AlreadyExistsError(absl::StrCat("bridge ", Quote(planned.network.bridge()),
                                                     " is already used by network ", Quote(other_name)));
      }
      if (planned.network.has_vxlan() && other.network.has_vxlan() &&
          other.network.vxlan().id() == planned.network.vxlan().id()) {
        return absl::AlreadyExistsError(absl::StrCat("VXLAN id ", planned.network.vxlan().id(),
                                                     " is already used by network ", Quote(other_name)));
      }
      if (other.subnet.Overlaps(planned.subnet) ||
          (other.subnet6 && planned.subnet6 && other.subnet6->Overlaps(*planned.subnet6))) {
        return absl::FailedPreconditionError(absl::StrCat("subnet of network ", Quote(name),
                                                          " overlaps network ", Quote(other_name), " (",
                                                          other.network.subnet(), ")"));
      }
    }
    planned.phase = v1::NetworkRecord::CREATING;
    networks_.emplace(name, planned);
  }
  // Whatever fails from here on takes the network back out.
  absl::Cleanup forget = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    networks_.erase(name);
  };

  DIYC_RETURN_IF_ERROR(CheckHostConflicts(planned));
  v1::NetworkRecord record;
  *record.mutable_network() = planned.network;
  record.set_phase(v1::NetworkRecord::CREATING);
  DIYC_RETURN_IF_ERROR(store_->PutNetwork(record));
  absl::Cleanup unrecord = [&] { (void)store_->DeleteNetwork(name); };
  FaultPoint("network.create.recorded");

  DIYC_ASSIGN_OR_RETURN(planned.bridge_index, MakeNetworkKernelObjects(planned));
  FaultPoint("network.create.bridge");
  absl::Cleanup unmake = [&] {
    if (auto host = HostSocket(); host.ok()) {
      (void)netcore::DeleteLinkIfExists(**host, planned.network.bridge());
      if (planned.network.has_vxlan()) (void)netcore::DeleteLinkIfExists(**host, planned.network.vxlan().device());
    }
  };
  absl::Status firewall = ApplyFirewall();
  if (!firewall.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      networks_.erase(name);
    }
    (void)ApplyFirewall();  // back to the rules without it
    return firewall;
  }

  FaultPoint("network.create.firewall");
  record.set_phase(v1::NetworkRecord::READY);
  absl::Status recorded = store_->PutNetwork(record);
  if (!recorded.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      networks_.erase(name);
    }
    (void)ApplyFirewall();
    return recorded;
  }
  std::move(unmake).Cancel();
  std::move(unrecord).Cancel();
  std::move(forget).Cancel();
  v1::Network created;
  {
    std::lock_guard<std::mutex> lock(mu_);
    NetworkState& state = networks_.at(name);
    state.phase = v1::NetworkRecord::READY;
    state.bridge_index = planned.bridge_index;
    created = Snapshot(state);
  }
  Publish(v1::Event::NETWORK_CREATED, name, nullptr);
  return created;
}

absl::Status Node::DeleteNetwork(const v1::DeleteNetworkRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.name()));
  const std::string& name = request.name();
  std::vector<std::string> to_detach;
  v1::NetworkRecord record;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = networks_.find(name);
    if (it == networks_.end()) return absl::NotFoundError(absl::StrCat("network ", Quote(name), " not found"));
    if (it->second.phase != v1::NetworkRecord::READY) {
      return absl::FailedPreconditionError(absl::StrCat("network ", Quote(name), " is being created or deleted"));
    }
    if (it->second.attachments > 0 && !request.force()) {
      return absl::FailedPreconditionError(absl::StrCat("network ", Quote(name), " has ", it->second.attachments,
                                                        " attachment(s); detach them or delete with force"));
    }
    // From here no new attachment can start; wait for those under way.
    it->second.phase = v1::NetworkRecord::DELETING;
    settled_.wait(lock, [&] {
      return std::none_of(attachments_.begin(), attachments_.end(), [&](const auto& entry) {
        return entry.second.record.attachment().network() == name && entry.second.phase != AttachPhase::kReady;
      });
    });
    for (auto& [host_ifname, attachment] : attachments_) {
      if (attachment.record.attachment().network() == name) {
        attachment.phase = AttachPhase::kDetaching;
        to_detach.push_back(host_ifname);
      }
    }
    *record.mutable_network() = it->second.network;
  }
  record.set_phase(v1::NetworkRecord::DELETING);
  absl::Status recorded = store_->PutNetwork(record);
  if (!recorded.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    networks_.at(name).phase = v1::NetworkRecord::READY;
    for (const std::string& host_ifname : to_detach) attachments_.at(host_ifname).phase = AttachPhase::kReady;
    settled_.notify_all();
    return recorded;
  }

  FaultPoint("network.delete.recorded");
  // Past the DELETING record the delete only goes forward: a crash is
  // finished by the next start.
  absl::Status first_error;
  for (const std::string& host_ifname : to_detach) {
    v1::Attachment detached;
    {
      std::lock_guard<std::mutex> lock(mu_);
      detached = attachments_.at(host_ifname).record.attachment();
    }
    absl::Status status = Unwire(host_ifname);
    if (!status.ok() && first_error.ok()) first_error = status;
    Publish(v1::Event::CONTAINER_DETACHED, name, &detached);
  }
  if (absl::Status reaped = reaper_->Flush(); !reaped.ok() && first_error.ok()) first_error = reaped;
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  absl::Status bridge = netcore::DeleteLinkIfExists(*host, record.network().bridge());
  if (!bridge.ok() && first_error.ok()) first_error = bridge;
  if (record.network().has_vxlan()) {
    absl::Status vxlan = netcore::DeleteLinkIfExists(*host, record.network().vxlan().device());
    if (!vxlan.ok() && first_error.ok()) first_error = vxlan;
  }
  FaultPoint("network.delete.bridge");
  {
    std::lock_guard<std::mutex> lock(mu_);
    networks_.erase(name);
  }
  absl::Status firewall = ApplyFirewall();
  if (!firewall.ok() && first_error.ok()) first_error = firewall;
  if (!first_error.ok()) return first_error;  // the record stays: retried on restart
  DIYC_RETURN_IF_ERROR(store_->DeleteNetwork(name));
  Publish(v1::Event::NETWORK_DELETED, name, nullptr);
  return absl::OkStatus();
}

absl::StatusOr<v1::Network> Node::GetNetwork(const v1::GetNetworkRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.name()));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = networks_.find(request.name());
  if (it == networks_.end() || it->second.phase == v1::NetworkRecord::CREATING) {
    return absl::NotFoundError(absl::StrCat("network ", Quote(request.name()), " not found"));
  }
  return Snapshot(it->second);
}

absl::StatusOr<v1::ListNetworksResponse> Node::ListNetworks(const v1::ListNetworksRequest& request) {
  DIYC_ASSIGN_OR_RETURN(int page_size, PageSize(request.page_size()));
  // The token is the last name returned: pages stay consistent while
  // networks come and go.
  v1::ListNetworksResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = networks_.upper_bound(request.page_token()); it != networks_.end(); ++it) {
    if (it->second.phase == v1::NetworkRecord::CREATING) continue;
    if (response.networks_size() == page_size) {
      response.set_next_page_token(response.networks(page_size - 1).name());
      break;
    }
    *response.add_networks() = Snapshot(it->second);
  }
  return response;
}

}  // namespace diyc::server
