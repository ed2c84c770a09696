#include "cni_commands.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cni_check.h"
#include "cni_error.h"
#include "cni_result.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/nl_socket.h"
#include "diycd_client.h"

namespace diyc::cni {
namespace {

using netcore::IpAddress;
using netcore::IpPrefix;

// STATUS must answer quickly even when diycd hangs.
constexpr std::chrono::seconds kStatusTimeout{5};
// How long an ADD waits for a network another ADD is creating.
constexpr std::chrono::seconds kCreateWait{5};

DiycdClient ClientFor(const NetConf& conf) {
  return DiycdClient(conf.socket, std::chrono::seconds(conf.timeout_seconds));
}

absl::Status RequireVersion(const NetConf& conf, absl::string_view command, absl::string_view minimum) {
  if (VersionAtLeast(conf.cni_version, minimum)) return absl::OkStatus();
  return CniError(kIncompatibleVersion,
                  absl::StrCat(command, " needs cniVersion ", minimum, " or later, the configuration has ",
                               conf.cni_version));
}

// A requested static address: its address, and the prefix length if given.
struct StaticIp {
  std::string address;
  int prefix_len = -1;
};

// The ips capability wins over CNI_ARGS IP=, as runtimes pass the newer
// mechanism when they use it. Only one IPv4 address can be asked for.
absl::StatusOr<StaticIp> RequestedIp(const NetConf& conf, const CniArgs& args) {
  std::vector<std::string> asked = conf.runtime_ips;
  if (asked.empty() && !args.ip.empty()) asked.push_back(args.ip);
  StaticIp chosen;
  for (const std::string& text : asked) {
    StaticIp ip;
    const size_t slash = text.find('/');
    ip.address = text.substr(0, slash);
    absl::StatusOr<IpAddress> parsed = IpAddress::Parse(ip.address);
    if (!parsed.ok()) return CniError(kInvalidNetworkConfig, absl::StrCat("invalid static address ", text));
    if (slash != std::string::npos) {
      absl::StatusOr<IpPrefix> prefix = IpPrefix::Parse(text);
      if (!prefix.ok()) return CniError(kInvalidNetworkConfig, absl::StrCat("invalid static address ", text));
      ip.prefix_len = prefix->prefix_len();
    }
    if (!parsed->is_v4()) {
      return CniError(kInvalidNetworkConfig,
                      absl::StrCat("static address ", text, ": only IPv4 can be chosen (IPv6 follows it)"));
    }
    if (!chosen.address.empty()) return CniError(kInvalidNetworkConfig, "only one static IPv4 address can be asked for");
    chosen = ip;
  }
  return chosen;
}

// The diyc network, created from the configuration's subnet (and the rest)
// when it does not exist. When the creation reports ALREADY_EXISTS a
// concurrent first ADD is making it: wait until it is ready (GetNetwork
// does not show a network being created), for a few seconds at most, as
// the name or bridge might be taken for good.
absl::StatusOr<v1::Network> EnsureNetwork(DiycdClient& client, const NetConf& conf) {
  absl::StatusOr<v1::Network> network = client.GetNetwork(conf.network);
  if (!absl::IsNotFound(network.status())) return network;
  if (conf.subnet.empty()) {
    return CniError(kInvalidNetworkConfig,
                    absl::StrCat("diyc network ", conf.network,
                                 " does not exist and the configuration gives no \"subnet\" to create it"));
  }
  v1::CreateNetworkRequest create;
  create.set_name(conf.network);
  create.set_subnet(conf.subnet);
  create.set_gateway(conf.gateway);
  create.set_ip_range(conf.ip_range);
  create.set_bridge(conf.bridge);
  create.set_mtu(conf.mtu);
  if (conf.nat) create.set_nat(*conf.nat);
  absl::StatusOr<v1::Network> created = client.CreateNetwork(create);
  if (!absl::IsAlreadyExists(created.status())) return created;
  const auto deadline = std::chrono::steady_clock::now() + kCreateWait;
  auto backoff = std::chrono::milliseconds(5);
  while (absl::IsNotFound((network = client.GetNetwork(conf.network)).status())) {
    if (std::chrono::steady_clock::now() + backoff > deadline) {
      return CniError(kTryAgainLater, absl::StrCat("diyc network ", conf.network, " is not ready"),
                      std::string(created.status().message()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
  return network;
}

// Code 3 (unknown container) when CNI_NETNS does not exist.
absl::Status RequireNetns(const std::string& path) {
  absl::StatusOr<netcore::Netns> ns = netcore::Netns::OpenPath(path);
  if (!ns.ok() && netcore::StatusErrno(ns.status()) == ENOENT) {
    return CniError(kUnknownContainer, absl::StrCat("network namespace ", path, " does not exist"));
  }
  return absl::OkStatus();  // other failures are diycd's to judge and report
}

std::string HostMac(const std::string& host_ifname) {
  absl::StatusOr<netcore::NlSocket> host = netcore::NlSocket::Open();
  if (!host.ok()) return "";
  absl::StatusOr<netcore::LinkInfo> link = netcore::GetLink(*host, host_ifname);
  return link.ok() ? link->mac : "";
}

}  // namespace

absl::StatusOr<std::string> Add(const CniEnv& env, const NetConf& conf) {
  absl::StatusOr<CniArgs> args = ParseCniArgs(env.args);
  if (!args.ok()) return args.status();
  absl::StatusOr<StaticIp> ip = RequestedIp(conf, *args);
  if (!ip.ok()) return ip.status();
  DiycdClient client = ClientFor(conf);

  // A missing namespace is told apart here, so that NOT_FOUND from diycd
  // below can only mean the network.
  if (absl::Status s = RequireNetns(env.netns); !s.ok()) return s;
  if (ip->prefix_len >= 0) {
    // A prefix length must be the network's own: the address is configured
    // with the subnet's, whatever the caller believed.
    absl::StatusOr<v1::Network> network = EnsureNetwork(client, conf);
    if (!network.ok()) return network.status();
    absl::StatusOr<IpPrefix> subnet = IpPrefix::Parse(network->subnet());
    if (subnet.ok() && subnet->prefix_len() != ip->prefix_len) {
      return CniError(kInvalidNetworkConfig, absl::StrCat("static address ", ip->address, "/", ip->prefix_len,
                                                          " does not match subnet ", network->subnet()));
    }
  }

  v1::AttachContainerRequest attach;
  attach.set_network(conf.network);
  attach.set_netns_path(env.netns);
  attach.set_ifname(env.ifname);
  attach.set_key(env.container_id);
  attach.set_ip(ip->address);
  attach.set_mac(absl::AsciiStrToLower(conf.runtime_mac.empty() ? args->mac : conf.runtime_mac));
  absl::StatusOr<v1::Attachment> attachment = client.Attach(attach);
  if (absl::IsNotFound(attachment.status())) {
    // The first ADD on this network: make it, then attach.
    absl::StatusOr<v1::Network> network = EnsureNetwork(client, conf);
    if (!network.ok()) return network.status();
    attachment = client.Attach(attach);
    if (absl::IsNotFound(attachment.status())) {
      if (absl::Status s = RequireNetns(env.netns); !s.ok()) return s;  // it went away meanwhile
    }
  }
  if (!attachment.ok()) return attachment.status();
  ResultInput input{.attachment = &*attachment,
                    .host_mac = HostMac(attachment->host_ifname()),
                    .netns = env.netns,
                    .dns = conf.dns};
  return BuildResult(input, conf.cni_version).dump();
}

absl::StatusOr<std::string> Del(const CniEnv& env, const NetConf& conf) {
  // CNI_ARGS is not needed to undo anything, so malformed ones do not block
  // a DEL (the spec wants DEL to succeed whenever it can).
  DiycdClient client = ClientFor(conf);
  v1::DetachContainerRequest detach;
  detach.set_network(conf.network);
  detach.set_key(env.container_id);
  detach.set_ifname(env.ifname);
  absl::Status status = client.Detach(detach);
  // A network that is gone has nothing attached to it either.
  if (absl::IsNotFound(status)) return std::string();
  if (!status.ok()) return status;
  return std::string();
}

absl::StatusOr<std::string> Check(const CniEnv& env, const NetConf& conf) {
  if (absl::Status s = RequireVersion(conf, "CHECK", "0.4.0"); !s.ok()) return s;
  absl::StatusOr<PrevResult> prev = ParsePrevResult(conf.prev_result, env.ifname);
  if (!prev.ok()) return prev.status();
  DiycdClient client = ClientFor(conf);
  absl::StatusOr<v1::Network> network = client.GetNetwork(conf.network);
  if (absl::IsNotFound(network.status())) {
    return CniError(kDrift, absl::StrCat("CHECK found drift: diyc network ", conf.network, " does not exist"));
  }
  if (!network.ok()) return network.status();
  v1::ListAttachmentsRequest list;
  list.set_network(conf.network);
  list.set_key(env.container_id);
  absl::StatusOr<v1::ListAttachmentsResponse> listed = client.ListAttachments(list);
  if (!listed.ok()) return listed.status();
  const auto& all = listed->attachments();
  auto it = std::find_if(all.begin(), all.end(), [&](const v1::Attachment& a) { return a.ifname() == env.ifname; });
  if (it == all.end()) {
    return CniError(kDrift, absl::StrCat("CHECK found drift: diycd has no attachment of container ", env.container_id,
                                         " as ", env.ifname, " on network ", conf.network));
  }
  absl::Status status = CheckKernel(
      {.netns = env.netns, .ifname = env.ifname, .prev = &*prev, .attachment = &*it, .bridge = network->bridge()});
  if (!status.ok()) return status;
  return std::string();
}

absl::StatusOr<std::string> Gc(const CniEnv&, const NetConf& conf) {
  if (absl::Status s = RequireVersion(conf, "GC", "1.1.0"); !s.ok()) return s;
  if (!conf.valid_attachments) {
    // Without the list every attachment would look stale: refuse.
    return CniError(kInvalidNetworkConfig, "GC needs \"cni.dev/valid-attachments\"");
  }
  v1::CollectAttachmentsRequest collect;
  collect.set_network(conf.network);
  for (const ValidAttachment& valid : *conf.valid_attachments) {
    // The list spans every plugin of the runtime: ids diycd cannot hold as
    // keys cannot be ours, so they need not be sent.
    const std::string& id = valid.container_id;
    const bool key_like = !id.empty() && id.size() <= 255 && absl::ascii_isalnum(static_cast<unsigned char>(id[0])) &&
                          std::all_of(id.begin(), id.end(), [](char c) {
                            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                                   c == '-';
                          });
    if (!key_like || valid.ifname.empty() || valid.ifname.size() > 15) continue;
    auto* entry = collect.add_valid();
    entry->set_key(id);
    entry->set_ifname(valid.ifname);
  }
  DiycdClient client = ClientFor(conf);
  absl::StatusOr<v1::CollectAttachmentsResponse> collected = client.Collect(collect);
  if (absl::IsNotFound(collected.status())) return std::string();
  if (!collected.ok()) return collected.status();
  return std::string();
}

absl::StatusOr<std::string> Status(const CniEnv&, const NetConf& conf) {
  if (absl::Status s = RequireVersion(conf, "STATUS", "1.1.0"); !s.ok()) return s;
  DiycdClient client(conf.socket, std::min(std::chrono::seconds(conf.timeout_seconds), kStatusTimeout));
  absl::StatusOr<v1::Network> network = client.GetNetwork(conf.network);
  if (absl::IsNotFound(network.status())) {
    if (!conf.subnet.empty()) return std::string();  // ADD would create it
    return CniError(kNotAvailable, absl::StrCat("diyc network ", conf.network,
                                                " does not exist and the configuration gives no \"subnet\""));
  }
  if (!network.ok()) return network.status();
  absl::StatusOr<IpPrefix> subnet = IpPrefix::Parse(network->subnet());
  if (subnet.ok()) {
    // Every address of the subnet but network, broadcast and gateway.
    const uint64_t capacity = (uint64_t{1} << (32 - subnet->prefix_len())) - 3;
    if (network->attachment_count() >= capacity) {
      return CniError(kNotAvailable, absl::StrCat("diyc network ", conf.network, " has no free address (",
                                                  network->attachment_count(), " attachments)"));
    }
  }
  return std::string();
}

std::string VersionJson(const std::string& requested) {
  nlohmann::json out = {{"cniVersion", requested.empty() ? kLatestVersion : requested},
                        {"supportedVersions", SupportedVersions()}};
  return out.dump();
}

}  // namespace diyc::cni
