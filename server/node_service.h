// The diyc.v1.Node gRPC service: a thin translation onto Node.
#pragma once

#include <atomic>

#include "diyc/v1/node.grpc.pb.h"
#include "containers.h"
#include "node.h"

namespace diyc::server {

class NodeService final : public v1::Node::Service {
 public:
  NodeService(Node& node, Containers& containers) : node_(node), containers_(containers) {}

  // Ends every Events stream (they otherwise last until the client leaves).
  void Shutdown() { shutting_down_ = true; }

  grpc::Status CreateNetwork(grpc::ServerContext* ctx, const v1::CreateNetworkRequest* req, v1::Network* resp) override;
  grpc::Status DeleteNetwork(grpc::ServerContext* ctx, const v1::DeleteNetworkRequest* req,
                             v1::DeleteNetworkResponse* resp) override;
  grpc::Status GetNetwork(grpc::ServerContext* ctx, const v1::GetNetworkRequest* req, v1::Network* resp) override;
  grpc::Status ListNetworks(grpc::ServerContext* ctx, const v1::ListNetworksRequest* req,
                            v1::ListNetworksResponse* resp) override;
  grpc::Status AttachContainer(grpc::ServerContext* ctx, const v1::AttachContainerRequest* req,
                               v1::Attachment* resp) override;
  grpc::Status DetachContainer(grpc::ServerContext* ctx, const v1::DetachContainerRequest* req,
                               v1::DetachContainerResponse* resp) override;
  grpc::Status ListAttachments(grpc::ServerContext* ctx, const v1::ListAttachmentsRequest* req,
                               v1::ListAttachmentsResponse* resp) override;
  grpc::Status CollectAttachments(grpc::ServerContext* ctx, const v1::CollectAttachmentsRequest* req,
                                  v1::CollectAttachmentsResponse* resp) override;
  grpc::Status AddPeer(grpc::ServerContext* ctx, const v1::AddPeerRequest* req, v1::Network* resp) override;
  grpc::Status RemovePeer(grpc::ServerContext* ctx, const v1::RemovePeerRequest* req, v1::Network* resp) override;
  grpc::Status Check(grpc::ServerContext* ctx, const v1::CheckRequest* req, v1::CheckResponse* resp) override;
  grpc::Status Repair(grpc::ServerContext* ctx, const v1::RepairRequest* req, v1::RepairResponse* resp) override;
  grpc::Status Probe(grpc::ServerContext* ctx, const v1::ProbeRequest* req, v1::ProbeResponse* resp) override;
  grpc::Status ImportImage(grpc::ServerContext* ctx, const v1::ImportImageRequest* req, v1::Image* resp) override;
  grpc::Status ListImages(grpc::ServerContext* ctx, const v1::ListImagesRequest* req, v1::ListImagesResponse* resp) override;
  grpc::Status RemoveImage(grpc::ServerContext* ctx, const v1::RemoveImageRequest* req,
                           v1::RemoveImageResponse* resp) override;
  grpc::Status RunContainer(grpc::ServerContext* ctx, const v1::RunContainerRequest* req, v1::Container* resp) override;
  grpc::Status GetContainer(grpc::ServerContext* ctx, const v1::GetContainerRequest* req, v1::Container* resp) override;
  grpc::Status ListContainers(grpc::ServerContext* ctx, const v1::ListContainersRequest* req,
                              v1::ListContainersResponse* resp) override;
  grpc::Status WaitContainer(grpc::ServerContext* ctx, const v1::WaitContainerRequest* req,
                             v1::WaitContainerResponse* resp) override;
  grpc::Status StopContainer(grpc::ServerContext* ctx, const v1::StopContainerRequest* req,
                             v1::StopContainerResponse* resp) override;
  grpc::Status RemoveContainer(grpc::ServerContext* ctx, const v1::RemoveContainerRequest* req,
                               v1::RemoveContainerResponse* resp) override;
  grpc::Status ContainerLogs(grpc::ServerContext* ctx, const v1::ContainerLogsRequest* req,
                             grpc::ServerWriter<v1::LogChunk>* writer) override;
  grpc::Status Events(grpc::ServerContext* ctx, const v1::EventsRequest* req,
                      grpc::ServerWriter<v1::Event>* writer) override;

 private:
  Node& node_;
  Containers& containers_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace diyc::server
