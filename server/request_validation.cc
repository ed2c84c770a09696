#include "request_validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/image.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"
#include "diyc/netcore/vxlan.h"
#include "ipam.h"
#include "names.h"
#include "target.h"

namespace diyc::server {

using netcore::IpAddress;
using netcore::IpPrefix;
using netcore::Quote;

namespace {

constexpr char kDefaultIfName[] = "eth0";
constexpr int64_t kMinMemory = 6 << 20;  // below this a container cannot even start its shell
constexpr size_t kMaxArgBytes = 128 << 10;
constexpr size_t kMaxCommandBytes = 1 << 20;
constexpr size_t kMaxKeyBytes = 255;

absl::Status ValidateHostname(absl::string_view hostname) {
  bool ok = !hostname.empty() && hostname.size() <= 64 && hostname.front() != '-' && hostname.front() != '.';
  for (char c : hostname) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                c == '_');
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("invalid hostname ", Quote(hostname)));
  return absl::OkStatus();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;  // ValidateMac admitted only hex digits
}

}  // namespace

absl::StatusOr<NetworkPlan> PlanNetworkRequest(const v1::CreateNetworkRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.name()));
  NetworkPlan plan;
  plan.name = request.name();

  DIYC_ASSIGN_OR_RETURN(plan.subnet, IpPrefix::Parse(request.subnet()));
  DIYC_RETURN_IF_ERROR(ValidateSubnet(plan.subnet));
  if (!request.ip_range().empty()) {
    DIYC_ASSIGN_OR_RETURN(IpPrefix range, IpPrefix::Parse(request.ip_range()));
    plan.ip_range = range;
  }
  // Each node of a spanning network has its own gateway: the first host of
  // its range.
  if (request.gateway().empty()) {
    plan.gateway = AddressAt(plan.ip_range ? *plan.ip_range : plan.subnet, 1);
  } else {
    DIYC_ASSIGN_OR_RETURN(plan.gateway, IpAddress::Parse(request.gateway()));
  }
  DIYC_ASSIGN_OR_RETURN(Ipam ipam, Ipam::Create(plan.subnet, plan.gateway, plan.ip_range));

  if (!request.subnet6().empty()) {
    DIYC_ASSIGN_OR_RETURN(IpPrefix subnet6, IpPrefix::Parse(request.subnet6()));
    DIYC_RETURN_IF_ERROR(ValidateSubnet6(subnet6));
    // Host offsets are shared with IPv4, so subnet6 must hold every host
    // offset of subnet (a /16 with a /120 would put the gateway of
    // 10.88.4.1 and every container past .255 outside subnet6).
    if (128 - subnet6.prefix_len() < 32 - plan.subnet.prefix_len()) {
      return absl::InvalidArgumentError(absl::StrCat("subnet6 ", subnet6.ToString(), " is smaller than subnet ",
                                                     plan.subnet.ToString(), ": its prefix length must be at most ",
                                                     96 + plan.subnet.prefix_len()));
    }
    plan.subnet6 = subnet6;
    // Host offsets are shared with IPv4: .5 is also ::5.
    plan.gateway6 = AddressAt(subnet6, ipam.Offset(plan.gateway));
  }

  plan.bridge = request.bridge().empty() ? DefaultBridgeName(request.name()) : request.bridge();
  DIYC_RETURN_IF_ERROR(netcore::ValidateIfName(plan.bridge));
  plan.internal = request.internal();
  plan.nat = !request.internal() && (!request.has_nat() || request.nat());
  if (request.mtu() != 0 && (request.mtu() < 1280 || request.mtu() > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid mtu ", request.mtu(), ": must be 1280..65535"));
  }
  plan.mtu = request.mtu();
  if (request.has_vxlan()) {
    const v1::Vxlan& vxlan = request.vxlan();
    NetworkPlan::Vxlan v;
    DIYC_RETURN_IF_ERROR(netcore::ValidateVxlanId(vxlan.id()));
    v.id = vxlan.id();
    if (vxlan.port() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("invalid VXLAN port ", vxlan.port(), ": must be 1..65535"));
    }
    v.port = vxlan.port() == 0 ? netcore::kVxlanDefaultPort : static_cast<uint16_t>(vxlan.port());
    if (vxlan.local().empty() && vxlan.underlay_device().empty()) {
      return absl::InvalidArgumentError("a network spanning nodes needs vxlan.local or vxlan.underlay_device");
    }
    if (!vxlan.local().empty()) {
      DIYC_ASSIGN_OR_RETURN(IpAddress local, IpAddress::Parse(vxlan.local()));
      if (!local.is_v4()) {
        return absl::InvalidArgumentError(absl::StrCat("VXLAN local address ", local.ToString(), " is not IPv4"));
      }
      if (plan.subnet.Contains(local)) {
        return absl::InvalidArgumentError(absl::StrCat("VXLAN local address ", local.ToString(),
                                                       " is inside the network's own subnet"));
      }
      v.local = local;
    }
    if (!vxlan.underlay_device().empty()) {
      DIYC_RETURN_IF_ERROR(netcore::ValidateIfName(vxlan.underlay_device()));
      v.underlay_device = vxlan.underlay_device();
    }
    for (const std::string& peer : request.peers()) {
      DIYC_ASSIGN_OR_RETURN(IpAddress address, ParseVxlanPeer(peer, v.local));
      if (std::find(v.peers.begin(), v.peers.end(), address) != v.peers.end()) {
        return absl::InvalidArgumentError(absl::StrCat("peer ", address.ToString(), " is listed twice"));
      }
      v.peers.push_back(address);
    }
    plan.vxlan = std::move(v);
  } else if (request.peers_size() > 0) {
    return absl::InvalidArgumentError("peers need a network spanning nodes (vxlan)");
  }
  // What the firewall would refuse (a bridge name nft cannot match exactly,
  // such as 'br"x' or 'br*') is refused here, before a bridge or a record
  // exists.
  DIYC_RETURN_IF_ERROR(netcore::ValidateFirewallNetwork(FirewallNetworkOf(plan)));
  return plan;
}

netcore::FirewallNetwork FirewallNetworkOf(const NetworkPlan& plan) {
  return {.name = plan.name,
          .bridge = plan.bridge,
          .subnet = plan.subnet,
          .subnet6 = plan.subnet6,
          .nat = plan.nat,
          .internal = plan.internal,
          .vxlan_port = plan.vxlan ? plan.vxlan->port : uint16_t{0},
          .vxlan_peers = plan.vxlan ? plan.vxlan->peers : std::vector<IpAddress>{}};
}

absl::StatusOr<IpAddress> ParseVxlanPeer(absl::string_view address, const std::optional<IpAddress>& local) {
  DIYC_ASSIGN_OR_RETURN(IpAddress peer, IpAddress::Parse(address));
  const uint32_t v4 = peer.is_v4() ? peer.v4() : 0;
  if (!peer.is_v4() || v4 == 0 || v4 == 0xffffffffu || (v4 >> 24) == 127 || (v4 >> 28) == 0xe) {
    return absl::InvalidArgumentError(absl::StrCat("VXLAN peer ", Quote(address), " is not an IPv4 unicast address"));
  }
  if (local && peer == *local) {
    return absl::InvalidArgumentError(absl::StrCat("VXLAN peer ", peer.ToString(), " is this node's own address"));
  }
  return peer;
}

absl::Status ValidateAttachRequest(const v1::AttachContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  DIYC_RETURN_IF_ERROR(ValidateTarget(TargetOf(request)));
  DIYC_RETURN_IF_ERROR(netcore::ValidateIfName(request.ifname().empty() ? kDefaultIfName : request.ifname()));
  if (!request.ip().empty()) DIYC_RETURN_IF_ERROR(IpAddress::Parse(request.ip()).status());
  if (!request.key().empty()) DIYC_RETURN_IF_ERROR(ValidateAttachmentKey(request.key()));
  if (!request.mac().empty()) {
    DIYC_RETURN_IF_ERROR(netcore::ValidateMac(request.mac()));
    // The low bit of the first octet marks multicast: no interface may use it.
    if (HexDigit(request.mac()[1]) & 1) {
      return absl::InvalidArgumentError(absl::StrCat("mac ", Quote(request.mac()), " is a multicast address"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAttachmentKey(absl::string_view key) {
  auto bad = [&](absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("invalid attachment key ", Quote(key), ": ", rule));
  };
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (key.empty()) return bad("must not be empty");
  if (key.size() > kMaxKeyBytes) return bad("longer than 255 characters");
  if (!alnum(key[0])) return bad("must start with a letter or digit");
  for (char c : key) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return bad("only letters, digits, '_', '.' and '-' are allowed");
  }
  return absl::OkStatus();
}

absl::Status ValidateDetachRequest(const v1::DetachContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  const Target target = TargetOf(request);
  if (!request.key().empty()) {
    DIYC_RETURN_IF_ERROR(ValidateAttachmentKey(request.key()));
    if (target.kind != Target::Kind::kNone) DIYC_RETURN_IF_ERROR(ValidateTarget(target));
  } else {
    DIYC_RETURN_IF_ERROR(ValidateTarget(target));
  }
  return netcore::ValidateIfName(request.ifname().empty() ? kDefaultIfName : request.ifname());
}

absl::Status ValidateCollectRequest(const v1::CollectAttachmentsRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));
  for (const v1::CollectAttachmentsRequest::Valid& valid : request.valid()) {
    DIYC_RETURN_IF_ERROR(ValidateAttachmentKey(valid.key()));
    DIYC_RETURN_IF_ERROR(netcore::ValidateIfName(valid.ifname().empty() ? kDefaultIfName : valid.ifname()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRunRequest(const v1::RunContainerRequest& r) {
  if (r.command().empty() || r.command(0).empty()) return absl::InvalidArgumentError("command must not be empty");
  size_t total = 0;
  for (const std::string& arg : r.command()) {
    if (arg.find('\0') != std::string::npos) return absl::InvalidArgumentError("command arguments must not contain NUL");
    if (arg.size() > kMaxArgBytes) return absl::InvalidArgumentError("a command argument is longer than 128 KiB");
    total += arg.size();
  }
  for (const std::string& e : r.env()) {
    const size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0 || e.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid env entry ", Quote(e), ": want KEY=VALUE"));
    }
    total += e.size();
  }
  if (total > kMaxCommandBytes) return absl::InvalidArgumentError("command and environment exceed 1 MiB");
  if (!r.workdir().empty() &&
      (r.workdir()[0] != '/' || r.workdir().find('\0') != std::string::npos || r.workdir().size() > 4096)) {
    return absl::InvalidArgumentError(absl::StrCat("workdir ", Quote(r.workdir()), " must be an absolute path"));
  }
  if (!r.hostname().empty()) DIYC_RETURN_IF_ERROR(ValidateHostname(r.hostname()));
  if (r.memory_bytes() < 0 || (r.memory_bytes() > 0 && r.memory_bytes() < kMinMemory)) {
    return absl::InvalidArgumentError(absl::StrCat("memory_bytes ", r.memory_bytes(), ": 0 (unlimited) or at least 6 MiB"));
  }
  if (r.pids_limit() < 0) return absl::InvalidArgumentError("pids_limit must not be negative");
  // Written so that NaN, which fails every comparison, is refused too.
  if (!(r.cpus() == 0 || (r.cpus() >= 0.01 && r.cpus() <= 1024))) {
    return absl::InvalidArgumentError(absl::StrCat("cpus ", r.cpus(), ": 0 (unlimited) or 0.01..1024"));
  }
  for (const v1::ContainerNetwork& n : r.networks()) {
    DIYC_RETURN_IF_ERROR(ValidateObjectName("network", n.network()));
    if (!n.ip().empty()) DIYC_RETURN_IF_ERROR(IpAddress::Parse(n.ip()).status());
  }
  if (!r.name().empty()) DIYC_RETURN_IF_ERROR(ValidateObjectName("container", r.name()));
  DIYC_RETURN_IF_ERROR(netcore::ValidateImageName(r.image()));
  return absl::OkStatus();
}

}  // namespace diyc::server
