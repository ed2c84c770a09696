// Node: the peers of networks that span nodes over VXLAN.
#include "node.h"

namespace diyc::server {

absl::StatusOr<v1::Network> Node::AddPeer(const v1::AddPeerRequest&) {
  return absl::UnimplementedError("AddPeer");
}

absl::StatusOr<v1::Network> Node::RemovePeer(const v1::RemovePeerRequest&) {
  return absl::UnimplementedError("RemovePeer");
}

}  // namespace diyc::server
