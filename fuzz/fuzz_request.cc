// Request validation on arbitrary binary protobufs: the first byte selects
// CreateNetworkRequest, AttachContainerRequest or RunContainerRequest, the
// rest is the message. Whatever validation accepts must satisfy the rules
// diycd relies on later (addresses inside their subnets, names the kernel
// and nft take, an nft script that says only what was asked for).
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/vxlan.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/validate.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "server/ipam.h"
#include "server/names.h"
#include "server/request_validation.h"
#include "server/target.h"

namespace {

using diyc::netcore::FirewallNetwork;
using diyc::netcore::IpAddress;
using diyc::netcore::IpPrefix;
using diyc::server::Ipam;
using diyc::server::NetworkPlan;
namespace v1 = diyc::v1;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

// No newline inside a quoted string, quotes balanced on every line, and only
// printable ASCII: one network cannot add a line of its own to the script.
void CheckScript(const std::string& script, absl::string_view input) {
  bool quoted = false;
  for (char c : script) {
    FUZZ_CHECK(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f), input);
    if (c == '"') quoted = !quoted;
    if (c == '\n') FUZZ_CHECK(!quoted, input);
  }
  FUZZ_CHECK(!quoted, input);
}

// What each line of the rendered ruleset may start with.
void CheckScriptLines(const std::string& script, absl::string_view input) {
  static const char* const kStarts[] = {"add table inet ", "delete table inet ", "table inet ", "\tset ",
                                        "\t\ttype ", "\t\telements = { ", "\t}", "\tchain ", "\t\ttype ",
                                        "\t\tiifname ", "\t\tip saddr ", "\t\tudp dport ", "}"};
  for (absl::string_view line : absl::StrSplit(script, '\n', absl::SkipEmpty())) {
    bool known = false;
    for (const char* start : kStarts) known = known || absl::StartsWith(line, start);
    FUZZ_CHECK(known, input);
  }
}

void CheckNetwork(const v1::CreateNetworkRequest& request, absl::string_view input) {
  absl::StatusOr<NetworkPlan> plan = diyc::server::PlanNetworkRequest(request);
  if (!plan.ok()) return;
  FUZZ_CHECK(diyc::server::ValidateObjectName("network", plan->name).ok(), input);

  // The IPv4 side: an exact network of /8../30 with the gateway on a host address.
  FUZZ_CHECK(plan->subnet.family() == diyc::netcore::IpFamily::kV4, input);
  FUZZ_CHECK(plan->subnet.Network() == plan->subnet, input);
  FUZZ_CHECK(plan->subnet.prefix_len() >= 8 && plan->subnet.prefix_len() <= 30, input);
  FUZZ_CHECK(plan->subnet.Contains(plan->gateway), input);
  absl::StatusOr<Ipam> ipam = Ipam::Create(plan->subnet, plan->gateway, plan->ip_range);
  FUZZ_CHECK(ipam.ok(), input);
  const uint32_t host_bits = 32 - plan->subnet.prefix_len();
  if (!plan->ip_range) FUZZ_CHECK(ipam->capacity() == (size_t{1} << host_bits) - 3, input);
  FUZZ_CHECK(ipam->capacity() > 0, input);
  std::set<IpAddress> handed_out;
  for (size_t i = 0; i < std::min<size_t>(3, ipam->capacity()); ++i) {
    absl::StatusOr<IpAddress> ip = ipam->Allocate();
    FUZZ_CHECK(ip.ok(), input);
    FUZZ_CHECK(plan->subnet.Contains(*ip) && *ip != plan->gateway, input);
    FUZZ_CHECK(*ip != plan->subnet.address(), input);
    if (plan->ip_range) FUZZ_CHECK(plan->ip_range->Contains(*ip), input);
    FUZZ_CHECK(handed_out.insert(*ip).second, input);
  }

  // A spanning network: a valid VNI and port, IPv4 peers, none of them this node.
  if (plan->vxlan) {
    FUZZ_CHECK(diyc::netcore::ValidateVxlanId(plan->vxlan->id).ok(), input);
    FUZZ_CHECK(plan->vxlan->port != 0, input);
    FUZZ_CHECK(plan->vxlan->local || !plan->vxlan->underlay_device.empty(), input);
    for (const IpAddress& peer : plan->vxlan->peers) {
      FUZZ_CHECK(peer.is_v4(), input);
      FUZZ_CHECK(!plan->vxlan->local || peer != *plan->vxlan->local, input);
    }
  } else {
    FUZZ_CHECK(request.peers_size() == 0, input);
  }

  // The IPv6 side shares host offsets with IPv4: the gateway and every
  // address the pool can hand out must land inside subnet6.
  FUZZ_CHECK(plan->subnet6.has_value() == plan->gateway6.has_value(), input);
  if (plan->subnet6) {
    FUZZ_CHECK(plan->subnet6->family() == diyc::netcore::IpFamily::kV6, input);
    FUZZ_CHECK(plan->subnet6->Network() == *plan->subnet6, input);
    FUZZ_CHECK(plan->subnet6->Contains(*plan->gateway6), input);
    const uint32_t last_host = (uint32_t{1} << host_bits) - 2;
    FUZZ_CHECK(plan->subnet6->Contains(diyc::server::AddressAt(*plan->subnet6, last_host)), input);
  }

  FUZZ_CHECK(diyc::netcore::ValidateIfName(plan->bridge).ok(), input);
  FUZZ_CHECK(plan->mtu == 0 || (plan->mtu >= 1280 && plan->mtu <= 65535), input);
  FUZZ_CHECK(!(plan->internal && plan->nat), input);

  // The firewall takes every network validation lets through.
  const FirewallNetwork network = diyc::server::FirewallNetworkOf(*plan);
  const absl::Status firewall_ok = diyc::netcore::ValidateFirewallNetwork(network);
  FUZZ_CHECK(firewall_ok.ok(), input);
  for (char c : network.bridge) FUZZ_CHECK(IsNameChar(c), input);

  const std::string script = diyc::netcore::RenderNftRuleset("diyc", {network});
  CheckScript(script, input);
  CheckScriptLines(script, input);
  FUZZ_CHECK(absl::StrContains(script, "\"diyc:net:" + network.name + "\""), input);
  FUZZ_CHECK(absl::StrContains(script, "\"" + network.bridge + "\""), input);
  FUZZ_CHECK(absl::StrContains(script, "masquerade") == network.nat, input);
  FUZZ_CHECK(absl::StrContains(script, "udp dport ") == plan->vxlan.has_value(), input);

  // Beside a second network: refused when they share a name or a bridge,
  // otherwise rendered with both.
  const FirewallNetwork other{.name = "fz-other", .bridge = "fzother0", .subnet = *IpPrefix::Parse("10.255.0.0/24")};
  const std::vector<FirewallNetwork> both = {network, other};
  const bool clash = network.name == other.name || network.bridge == other.bridge;
  FUZZ_CHECK(diyc::netcore::ValidateFirewallNetworks(both).ok() == !clash, input);
  if (!clash) {
    const std::string two = diyc::netcore::RenderNftRuleset("diyc", both);
    CheckScript(two, input);
    CheckScriptLines(two, input);
    // Networks in any order give the same script.
    FUZZ_CHECK(two == diyc::netcore::RenderNftRuleset("diyc", {other, network}), input);
  }
}

void CheckAttach(const v1::AttachContainerRequest& request, absl::string_view input) {
  if (!diyc::server::ValidateAttachRequest(request).ok()) return;
  FUZZ_CHECK(diyc::server::ValidateObjectName("network", request.network()).ok(), input);
  FUZZ_CHECK(diyc::server::ValidateTarget(diyc::server::TargetOf(request)).ok(), input);
  const std::string ifname = request.ifname().empty() ? "eth0" : request.ifname();
  FUZZ_CHECK(diyc::netcore::ValidateIfName(ifname).ok(), input);
  if (!request.mac().empty()) {
    FUZZ_CHECK(request.mac().size() == 17, input);
    const char low = request.mac()[1];
    // Unicast: the low bit of the first octet is clear.
    FUZZ_CHECK(low == '0' || low == '2' || low == '4' || low == '6' || low == '8' || low == 'a' || low == 'A' ||
                   low == 'c' || low == 'C' || low == 'e' || low == 'E',
               input);
  }
  if (request.ip().empty()) return;
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(request.ip());
  FUZZ_CHECK(ip.ok(), input);
  // A static address against a fixed network, as Attach reserves it.
  const IpPrefix subnet = *IpPrefix::Parse("10.88.0.0/16");
  absl::StatusOr<Ipam> ipam = Ipam::Create(subnet, *IpAddress::Parse("10.88.0.1"));
  FUZZ_CHECK(ipam.ok(), input);
  const absl::Status reserved = ipam->Reserve(*ip);
  if (!reserved.ok()) {
    FUZZ_CHECK(!ip->is_v4() || !subnet.Contains(*ip) || ip->v4() == subnet.address().v4() ||
                   ip->v4() == subnet.address().v4() + 0xffff || ip->ToString() == "10.88.0.1",
               input);
    return;
  }
  FUZZ_CHECK(subnet.Contains(*ip), input);
  FUZZ_CHECK(ipam->used() == 1, input);
  FUZZ_CHECK(absl::IsAlreadyExists(ipam->Reserve(*ip)), input);
  ipam->Release(*ip);
  FUZZ_CHECK(ipam->used() == 0, input);
  FUZZ_CHECK(ipam->Reserve(*ip).ok(), input);
}

void CheckRun(const v1::RunContainerRequest& request, absl::string_view input) {
  if (!diyc::server::ValidateRunRequest(request).ok()) return;
  FUZZ_CHECK(!request.command().empty() && !request.command(0).empty(), input);
  for (const std::string& arg : request.command()) FUZZ_CHECK(arg.find('\0') == std::string::npos, input);
  for (const std::string& e : request.env()) {
    FUZZ_CHECK(e.find('\0') == std::string::npos, input);
    const size_t eq = e.find('=');
    FUZZ_CHECK(eq != std::string::npos && eq > 0, input);
  }
  FUZZ_CHECK(request.workdir().empty() || request.workdir()[0] == '/', input);
  FUZZ_CHECK(request.name().empty() || diyc::server::ValidateObjectName("container", request.name()).ok(), input);
  FUZZ_CHECK(diyc::server::ValidateObjectName("image", request.image()).ok(), input);
  for (char c : request.hostname()) FUZZ_CHECK(IsNameChar(c), input);
  FUZZ_CHECK(request.memory_bytes() == 0 || request.memory_bytes() >= (6 << 20), input);
  FUZZ_CHECK(request.pids_limit() >= 0, input);
  // The cgroup layer gets a finite CPU limit in range.
  FUZZ_CHECK(request.cpus() == 0 || (request.cpus() >= 0.01 && request.cpus() <= 1024), input);
  for (const v1::ContainerNetwork& n : request.networks()) {
    FUZZ_CHECK(diyc::server::ValidateObjectName("network", n.network()).ok(), input);
    FUZZ_CHECK(n.ip().empty() || IpAddress::Parse(n.ip()).ok(), input);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Invalid UTF-8 in string fields is refused with a log line per input.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 8192) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const uint8_t* message = data + 1;
  const int length = static_cast<int>(size - 1);
  switch (data[0] % 3) {
    case 0: {
      v1::CreateNetworkRequest request;
      if (request.ParseFromArray(message, length)) CheckNetwork(request, input);
      break;
    }
    case 1: {
      v1::AttachContainerRequest request;
      if (request.ParseFromArray(message, length)) CheckAttach(request, input);
      break;
    }
    case 2: {
      v1::RunContainerRequest request;
      if (request.ParseFromArray(message, length)) CheckRun(request, input);
      break;
    }
  }
  return 0;
}
