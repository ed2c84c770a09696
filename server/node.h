// The node's networks and attachments: validation, IPAM, kernel objects,
// firewall and durable state, shared by every front end (gRPC today).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/nl_socket.h"
#include "diyc/v1/events.pb.h"
#include "diyc/v1/network.pb.h"
#include "diyc/v1/state.pb.h"
#include "events.h"
#include "ipam.h"
#include "link_reaper.h"
#include "request_validation.h"
#include "store.h"
#include "target.h"

namespace diyc::server {

struct NodeOptions {
  std::string state_dir = "/var/lib/diyc";
  // nullptr: nftables in table "inet diyc".
  std::unique_ptr<netcore::Firewall> firewall;
  ContainerNetnsResolver containers;
};

// Thread-safe. Every mutation records its intent before it touches the
// kernel and undoes what it made when a later step fails; Reconcile() brings
// the kernel back in line with the records after a crash.
class Node {
 public:
  static absl::StatusOr<std::unique_ptr<Node>> Open(NodeOptions options);
  ~Node();

  // Run once before serving: rolls back interrupted operations, re-creates
  // missing bridges and rules of recorded networks, frees attachments whose
  // namespace is gone, deletes diyc-marked links nobody records. Returns one
  // line per repair made.
  absl::StatusOr<std::vector<std::string>> Reconcile();

  absl::StatusOr<v1::Network> CreateNetwork(const v1::CreateNetworkRequest& request);
  absl::Status DeleteNetwork(const v1::DeleteNetworkRequest& request);
  absl::StatusOr<v1::Network> GetNetwork(const v1::GetNetworkRequest& request);
  absl::StatusOr<v1::ListNetworksResponse> ListNetworks(const v1::ListNetworksRequest& request);

  absl::StatusOr<v1::Attachment> Attach(const v1::AttachContainerRequest& request);
  absl::Status Detach(const v1::DetachContainerRequest& request);
  absl::StatusOr<v1::ListAttachmentsResponse> ListAttachments(const v1::ListAttachmentsRequest& request);
  // Detaches the keyed attachments of a network missing from request.valid.
  absl::StatusOr<v1::CollectAttachmentsResponse> CollectAttachments(const v1::CollectAttachmentsRequest& request);

  // Peers of a spanning network (node_peers.cc). Idempotent.
  absl::StatusOr<v1::Network> AddPeer(const v1::AddPeerRequest& request);
  absl::StatusOr<v1::Network> RemovePeer(const v1::RemovePeerRequest& request);

  // Every attachment whose target is the container `name`.
  absl::StatusOr<std::vector<v1::Attachment>> AttachmentsOfContainer(const std::string& name);

  absl::StatusOr<v1::ProbeResponse> Probe(const v1::ProbeRequest& request);

  // Drift between records and kernel; Repair restores diyc's own objects.
  absl::StatusOr<v1::CheckResponse> Check();
  absl::StatusOr<v1::RepairResponse> Repair();

  EventBus& events() { return events_; }

 private:
  struct NetworkState {
    v1::Network network;  // attachment_count is filled on read
    v1::NetworkRecord::Phase phase = v1::NetworkRecord::CREATING;
    netcore::IpPrefix subnet;
    netcore::IpAddress gateway;
    std::optional<netcore::IpPrefix> subnet6;
    std::optional<netcore::IpAddress> gateway6;
    std::optional<Ipam> ipam;
    int attachments = 0;  // in any phase
    int bridge_index = 0;  // 0: look it up
  };
  enum class AttachPhase { kAttaching, kReady, kDetaching };
  struct AttachmentState {
    v1::AttachmentRecord record;
    AttachPhase phase = AttachPhase::kAttaching;
  };

  explicit Node(NodeOptions options, std::unique_ptr<StateStore> store);

  // Networks (node_networks.cc).
  // Returns the bridge's ifindex.
  absl::StatusOr<int> MakeNetworkKernelObjects(const NetworkState& state);
  absl::Status ApplyFirewall();
  static netcore::FirewallNetwork FirewallRulesOf(const NetworkState& state);
  absl::Status CheckHostConflicts(const NetworkState& planned);
  v1::Network Snapshot(const NetworkState& state) const;
  // A new network: the request checked and completed against the host.
  absl::StatusOr<NetworkState> PlanNetwork(const v1::CreateNetworkRequest& request);
  // A recorded network, exactly as recorded.
  absl::StatusOr<NetworkState> StateFromRecord(const v1::Network& recorded);
  static NetworkState StateFromPlan(const NetworkPlan& plan, Ipam ipam);
  struct Underlay {
    netcore::IpAddress local;
    std::string device;
    uint32_t mtu = 0;
  };
  static absl::StatusOr<Underlay> ResolveUnderlay(netcore::NlSocket& host, const NetworkPlan::Vxlan& vxlan);

  // Spanning networks (node_peers.cc): makes the VXLAN port of the bridge,
  // or puts an existing one of ours back on it, with every peer's flooding
  // entry. No-op for a node-local network.
  absl::Status EnsureVxlan(const NetworkState& state, int bridge_index);
  // Remote endpoints the VXLAN link sends to that are not peers of `network`.
  static absl::StatusOr<std::vector<netcore::IpAddress>> StaleVxlanPeers(netcore::NlSocket& host,
                                                                         const v1::Network& network, int vxlan_index);
  // A ready network that spans nodes: NOT_FOUND or FAILED_PRECONDITION.
  absl::StatusOr<v1::Network> SpanningNetwork(const std::string& name);
  // Serialises peer changes, so records and the kernel agree.
  std::mutex peers_mu_;

  // Check and Repair (node_check.cc).
  absl::StatusOr<v1::RepairResponse> Inspect(bool repair);
  // Receives each drift found, what was done about it and how that went.
  using DriftSink = std::function<void(v1::Drift, absl::Status, absl::string_view)>;
  void InspectVxlan(netcore::NlSocket& host, const NetworkState& state, int bridge_index, const DriftSink& found,
                    bool repair);

  // Attachments (node_attach.cc).
  absl::Status WireAttachment(const NetworkState& network, const netcore::Netns& ns, v1::Attachment* attachment);
  // Deletes the host veth (and with it the peer) and forgets the attachment.
  absl::Status Unwire(const std::string& host_ifname);
  void Forget(const std::string& host_ifname);
  void Publish(v1::Event::Type type, const std::string& network, const v1::Attachment* attachment);

  NodeOptions options_;
  std::unique_ptr<StateStore> store_;
  std::string boot_id_;
  std::string instance_;
  std::unique_ptr<LinkReaper> reaper_;
  EventBus events_;

  std::mutex mu_;
  std::condition_variable settled_;  // an attachment left kAttaching/kDetaching
  std::map<std::string, NetworkState> networks_;          // by name
  std::map<std::string, AttachmentState> attachments_;    // by host_ifname
  std::mutex firewall_mu_;  // serialises rule updates, taken without mu_
};

}  // namespace diyc::server
