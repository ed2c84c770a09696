// Node: attaching namespaces to networks and detaching them.
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <utility>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/addr.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/route.h"
#include "diyc/netcore/sysctl.h"
#include "absl/strings/numbers.h"
#include <cstdio>
#include <mutex>
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"
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

constexpr int kMaxBridgePorts = 1023;  // BR_MAX_PORTS - 1 in the kernel
constexpr char kDefaultIfName[] = "eth0";
// Past this many ports, one broadcast (an ARP request) fans out into more
// packets than the kernel's default input backlog (1000) holds.
constexpr int kBusyBridgePorts = 512;
constexpr int kLargeBridgeBacklog = 4096;

// Raises net.core.netdev_max_backlog to kLargeBridgeBacklog, never lowers
// it; once per process.
void EnsureBacklogForLargeBridges() {
  static std::once_flag once;
  std::call_once(once, [] {
    absl::StatusOr<std::string> value = netcore::ReadSysctl(nullptr, "net.core.netdev_max_backlog");
    int current = 0;
    if (value.ok() && absl::SimpleAtoi(*value, &current) && current < kLargeBridgeBacklog) {
      if (netcore::WriteSysctl(nullptr, "net.core.netdev_max_backlog", absl::StrCat(kLargeBridgeBacklog)).ok()) {
        std::fprintf(stderr, "diycd: raised net.core.netdev_max_backlog from %d to %d for a bridge of more than %d ports\n",
                     current, kLargeBridgeBacklog, kBusyBridgePorts);
      }
    }
  });
}

struct NsIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
};

absl::StatusOr<NsIdentity> IdentityOf(const netcore::Netns& ns) {
  struct stat st;
  if (fstat(ns.fd(), &st) != 0) return netcore::ErrnoError(errno, "stat netns");
  return NsIdentity{st.st_dev, st.st_ino};
}

bool SameNamespace(const v1::AttachmentRecord& record, const NsIdentity& id) {
  return record.netns_dev() == id.dev && record.netns_ino() == id.ino;
}

}  // namespace

absl::Status Node::WireAttachment(const NetworkState& network, const netcore::Netns& ns, v1::Attachment* a) {
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket inside, netcore::NlSocket::OpenIn(ns));

  // The veth takes the bridge's MTU (0: the kernel's default matches a
  // bridge left at its default).
  netcore::VethOptions veth{.name = a->host_ifname(), .peer_name = a->ifname(), .peer_netns = &ns,
                            .mtu = network.network.mtu(), .master_index = network.bridge_index, .up = true,
                            .peer_mac = a->mac(), .no_ipv6 = true,
                            .alias = OwnerAlias(instance_, network.network.name())};
  if (veth.master_index == 0) {
    DIYC_ASSIGN_OR_RETURN(netcore::LinkInfo bridge, netcore::GetLink(*host, network.network.bridge()));
    veth.master_index = bridge.index;
    veth.mtu = bridge.mtu;
  }
  absl::StatusOr<netcore::LinkInfo> created = netcore::CreateVeth(*host, veth);
  if (absl::IsAlreadyExists(created.status()) && reaper_->pending()) {
    // The name may still be held by the peer of a detached veth awaiting
    // deletion in this very namespace.
    DIYC_RETURN_IF_ERROR(reaper_->Flush());
    created = netcore::CreateVeth(*host, veth);
  }
  if (absl::IsNotFound(created.status())) {
    return absl::FailedPreconditionError(absl::StrCat("bridge ", Quote(network.network.bridge()), " of network ",
                                                      Quote(network.network.name()),
                                                      " is missing; restart diycd to re-create it"));
  }
  DIYC_RETURN_IF_ERROR(created.status());
  FaultPoint("attach.veth");
  // From here a failure deletes the host end, which takes the peer with it.
  absl::Cleanup unwire = [&] { (void)netcore::DeleteLinkIfExists(*host, a->host_ifname()); };

  DIYC_ASSIGN_OR_RETURN(netcore::LinkInfo peer, netcore::GetLink(inside, a->ifname()));
  DIYC_ASSIGN_OR_RETURN(IpPrefix ip, IpPrefix::Parse(a->ip()));
  DIYC_RETURN_IF_ERROR(netcore::AddAddress(inside, peer.index, ip));
  FaultPoint("attach.address");
  if (!a->ip6().empty()) {
    DIYC_ASSIGN_OR_RETURN(IpPrefix ip6, IpPrefix::Parse(a->ip6()));
    // IPAM guarantees uniqueness, so duplicate address detection would only
    // delay the address by a second or two.
    DIYC_RETURN_IF_ERROR(netcore::AddAddress(inside, peer.index, ip6, {.no_dad = true}));
  }
  // Without IPv6 on the network the peer needs no link-local either: each
  // one floods DAD and router solicitations to every port of the bridge,
  // which makes attaching slower the more containers there are.
  netcore::LinkChange peer_change{.up = true};
  if (!network.subnet6) peer_change.no_ipv6_addrgen = true;
  DIYC_RETURN_IF_ERROR(netcore::ChangeLink(inside, peer.index, peer_change));
  DIYC_RETURN_IF_ERROR(netcore::BringLoopbackUp(inside));
  // The first network attached gives the namespace its default route; later
  // ones only add their subnet.
  auto add_default = [&](const IpAddress& gateway) -> absl::Status {
    absl::Status status = netcore::AddRoute(
        inside, {.dst = netcore::DefaultRoute(gateway.family()), .gateway = gateway, .oif = peer.index});
    return absl::IsAlreadyExists(status) ? absl::OkStatus() : status;
  };
  DIYC_RETURN_IF_ERROR(add_default(network.gateway));
  if (network.gateway6) DIYC_RETURN_IF_ERROR(add_default(*network.gateway6));
  a->set_mac(peer.mac);
  std::move(unwire).Cancel();
  return absl::OkStatus();
}

absl::StatusOr<v1::Attachment> Node::Attach(const v1::AttachContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateAttachRequest(request));
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  const Target target = TargetOf(request);
  DIYC_RETURN_IF_ERROR(ValidateTarget(target));
  const std::string ifname = request.ifname().empty() ? kDefaultIfName : request.ifname();
  DIYC_RETURN_IF_ERROR(netcore::ValidateIfName(ifname));
  std::optional<IpAddress> static_ip;
  if (!request.ip().empty()) {
    DIYC_ASSIGN_OR_RETURN(static_ip, IpAddress::Parse(request.ip()));
  }
  if (!request.mac().empty()) {
    DIYC_RETURN_IF_ERROR(netcore::ValidateMac(request.mac()));
    // The low bit of the first octet marks multicast: no interface may use it.
    if (std::stoi(request.mac().substr(0, 2), nullptr, 16) & 1) {
      return absl::InvalidArgumentError(absl::StrCat("mac ", Quote(request.mac()), " is a multicast address"));
    }
  }
  DIYC_ASSIGN_OR_RETURN(netcore::Netns ns, OpenTarget(target, options_.containers));
  DIYC_ASSIGN_OR_RETURN(NsIdentity identity, IdentityOf(ns));

  // Reserve everything under the lock; the kernel work happens outside it.
  v1::AttachmentRecord record;
  v1::Attachment& a = *record.mutable_attachment();
  NetworkState network_copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = networks_.find(request.network());
    if (it == networks_.end() || it->second.phase == v1::NetworkRecord::CREATING) {
      return absl::NotFoundError(absl::StrCat("network ", Quote(request.network()), " not found"));
    }
    NetworkState& network = it->second;
    if (network.phase != v1::NetworkRecord::READY) {
      return absl::FailedPreconditionError(absl::StrCat("network ", Quote(request.network()), " is being deleted"));
    }
    for (const auto& [host_ifname, other] : attachments_) {
      const v1::Attachment& o = other.record.attachment();
      if (o.network() == request.network() && o.ifname() == ifname && SameNamespace(other.record, identity)) {
        return absl::AlreadyExistsError(absl::StrCat(target.Label(), " is already attached to network ",
                                                     Quote(request.network()), " as ", Quote(ifname)));
      }
      if (!request.key().empty() && o.network() == request.network() && o.key() == request.key() &&
          o.ifname() == ifname) {
        return absl::AlreadyExistsError(absl::StrCat("network ", Quote(request.network()), " already has an attachment ",
                                                     "with key ", Quote(request.key()), " and ifname ", Quote(ifname)));
      }
    }
    if (network.attachments >= kMaxBridgePorts) {
      return absl::ResourceExhaustedError(absl::StrCat("bridge ", Quote(network.network.bridge()), " has ",
                                                       kMaxBridgePorts, " ports, the kernel's limit"));
    }
    IpAddress ip;
    if (static_ip) {
      if (!static_ip->is_v4()) return absl::InvalidArgumentError("ip must be an IPv4 address");
      if (!network.subnet.Contains(*static_ip)) {
        return absl::InvalidArgumentError(absl::StrCat("ip ", static_ip->ToString(), " is outside subnet ",
                                                       network.network.subnet()));
      }
      DIYC_RETURN_IF_ERROR(network.ipam->Reserve(*static_ip));
      ip = *static_ip;
    } else {
      DIYC_ASSIGN_OR_RETURN(ip, network.ipam->Allocate());
      // (Allocate reports RESOURCE_EXHAUSTED with the pool size.)
    }
    a.set_network(request.network());
    SetTarget(target, &a);
    a.set_ifname(ifname);
    a.set_key(request.key());
    a.set_ip(IpPrefix(ip, network.subnet.prefix_len()).ToString());
    a.set_gateway(network.network.gateway());
    if (network.subnet6) {
      a.set_ip6(IpPrefix(AddressAt(*network.subnet6, network.ipam->Offset(ip)), network.subnet6->prefix_len()).ToString());
      a.set_gateway6(network.network.gateway6());
    }
    a.set_mac(request.mac().empty() ? NewMacAddress() : absl::AsciiStrToLower(request.mac()));
    do {
      a.set_host_ifname(NewHostVethName());
    } while (attachments_.count(a.host_ifname()));
    *a.mutable_created_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    record.set_netns_dev(identity.dev);
    record.set_netns_ino(identity.ino);
    record.set_boot_id(boot_id_);
    attachments_[a.host_ifname()] = {record, AttachPhase::kAttaching};
    ++network.attachments;
    network_copy = network;
  }
  const std::string host_ifname = a.host_ifname();
  absl::Cleanup release = [&] { Forget(host_ifname); };

  // The record comes first, so a crash at any later point is found and
  // finished or undone by the next start.
  DIYC_RETURN_IF_ERROR(store_->PutAttachment(record));
  absl::Cleanup unrecord = [&] { (void)store_->DeleteAttachment(host_ifname); };
  FaultPoint("attach.recorded");
  DIYC_RETURN_IF_ERROR(netcore::Annotate(WireAttachment(network_copy, ns, &a),
                                         absl::StrCat("attach ", target.Label(), " to network ", Quote(a.network()))));

  if (network_copy.attachments > kBusyBridgePorts) EnsureBacklogForLargeBridges();
  std::move(unrecord).Cancel();
  std::move(release).Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    AttachmentState& state = attachments_.at(host_ifname);
    state.record.mutable_attachment()->set_mac(a.mac());
    state.phase = AttachPhase::kReady;
  }
  settled_.notify_all();
  Publish(v1::Event::CONTAINER_ATTACHED, a.network(), &a);
  return a;
}

void Node::Forget(const std::string& host_ifname) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = attachments_.find(host_ifname);
    if (it == attachments_.end()) return;
    const v1::Attachment& a = it->second.record.attachment();
    auto network = networks_.find(a.network());
    if (network != networks_.end()) {
      --network->second.attachments;
      if (absl::StatusOr<IpPrefix> ip = IpPrefix::Parse(a.ip()); ip.ok() && network->second.ipam) {
        network->second.ipam->Release(ip->address());
      }
    }
    attachments_.erase(it);
  }
  settled_.notify_all();
}

absl::Status Node::Unwire(const std::string& host_ifname) {
  // Traffic stops at once; the veth (and with it the peer) is deleted in
  // the reaper's next batch. A missing one is already undone.
  DIYC_RETURN_IF_ERROR(reaper_->Retire(host_ifname));
  FaultPoint("detach.unwired");
  DIYC_RETURN_IF_ERROR(store_->DeleteAttachment(host_ifname));
  Forget(host_ifname);
  return absl::OkStatus();
}

absl::Status Node::Detach(const v1::DetachContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateDetachRequest(request));
  const Target target = TargetOf(request);
  const std::string ifname = request.ifname().empty() ? kDefaultIfName : request.ifname();
  // The namespace may be gone already; then the target as recorded matches.
  // A key names the attachment by itself: no namespace needs opening.
  std::optional<NsIdentity> identity;
  if (request.key().empty()) {
    if (absl::StatusOr<netcore::Netns> ns = OpenTarget(target, options_.containers); ns.ok()) {
      if (absl::StatusOr<NsIdentity> id = IdentityOf(*ns); id.ok()) identity = *id;
    }
  }

  std::string host_ifname;
  v1::Attachment detached;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!networks_.count(request.network())) {
      return absl::NotFoundError(absl::StrCat("network ", Quote(request.network()), " not found"));
    }
    auto find = [&]() -> AttachmentState* {
      for (auto& [name, state] : attachments_) {
        const v1::Attachment& a = state.record.attachment();
        if (a.network() != request.network() || a.ifname() != ifname) continue;
        if (!request.key().empty()) {
          if (a.key() == request.key()) return &state;
          continue;
        }
        if (identity ? SameNamespace(state.record, *identity) : TargetOf(a) == target) return &state;
      }
      return nullptr;
    };
    // An attach or detach of the same attachment under way finishes first.
    AttachmentState* state = nullptr;
    settled_.wait(lock, [&] {
      state = find();
      return state == nullptr || state->phase == AttachPhase::kReady;
    });
    if (state == nullptr) return absl::OkStatus();  // nothing attached: done
    state->phase = AttachPhase::kDetaching;
    host_ifname = state->record.attachment().host_ifname();
    detached = state->record.attachment();
  }
  absl::Status status = Unwire(host_ifname);
  if (!status.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = attachments_.find(host_ifname); it != attachments_.end()) it->second.phase = AttachPhase::kReady;
    }
    settled_.notify_all();
    return status;
  }
  Publish(v1::Event::CONTAINER_DETACHED, detached.network(), &detached);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Attachment>> Node::AttachmentsOfContainer(const std::string& name) {
  std::vector<v1::Attachment> found;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [host_ifname, state] : attachments_) {
    const v1::Attachment& a = state.record.attachment();
    if (a.target_case() == v1::Attachment::kContainer && a.container() == name && state.phase == AttachPhase::kReady) {
      found.push_back(a);
    }
  }
  return found;
}

absl::StatusOr<v1::ListAttachmentsResponse> Node::ListAttachments(const v1::ListAttachmentsRequest& request) {
  if (!request.network().empty()) DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  if (!request.key().empty()) DIYC_RETURN_IF_ERROR(ValidateAttachmentKey(request.key()));
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size must not be negative");
  const int page_size = request.page_size() == 0 ? 100 : std::min(request.page_size(), 1000);
  v1::ListAttachmentsResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  if (!request.network().empty() && !networks_.count(request.network())) {
    return absl::NotFoundError(absl::StrCat("network ", Quote(request.network()), " not found"));
  }
  // Ordered by host_ifname; the token is the last one returned.
  for (auto it = attachments_.upper_bound(request.page_token()); it != attachments_.end(); ++it) {
    const v1::Attachment& a = it->second.record.attachment();
    if (it->second.phase != AttachPhase::kReady) continue;
    if (!request.network().empty() && a.network() != request.network()) continue;
    if (!request.key().empty() && a.key() != request.key()) continue;
    if (response.attachments_size() == page_size) {
      response.set_next_page_token(response.attachments(page_size - 1).host_ifname());
      break;
    }
    *response.add_attachments() = a;
  }
  return response;
}

absl::StatusOr<v1::CollectAttachmentsResponse> Node::CollectAttachments(const v1::CollectAttachmentsRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateCollectRequest(request));
  std::set<std::pair<std::string, std::string>> valid;  // (key, ifname)
  for (const v1::CollectAttachmentsRequest::Valid& v : request.valid()) {
    valid.emplace(v.key(), v.ifname().empty() ? kDefaultIfName : v.ifname());
  }
  std::vector<v1::Attachment> stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!networks_.count(request.network())) {
      return absl::NotFoundError(absl::StrCat("network ", Quote(request.network()), " not found"));
    }
    for (const auto& [host_ifname, state] : attachments_) {
      const v1::Attachment& a = state.record.attachment();
      // Attachments still being made belong to an ADD under way, which the
      // caller cannot have listed yet: never collect those.
      if (a.network() != request.network() || a.key().empty() || state.phase != AttachPhase::kReady) continue;
      if (!valid.count({a.key(), a.ifname()})) stale.push_back(a);
    }
  }
  // Each is detached by its key, which waits for and tolerates a concurrent
  // detach of the same attachment.
  v1::CollectAttachmentsResponse response;
  for (const v1::Attachment& a : stale) {
    v1::DetachContainerRequest detach;
    detach.set_network(a.network());
    detach.set_key(a.key());
    detach.set_ifname(a.ifname());
    DIYC_RETURN_IF_ERROR(netcore::Annotate(Detach(detach), absl::StrCat("collect attachment with key ", Quote(a.key()))));
    *response.add_detached() = a;
  }
  return response;
}

}  // namespace diyc::server
