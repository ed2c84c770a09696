// The calls diyc-cni makes to diycd, each with a deadline, returning
// absl::Status with diycd's gRPC code and a message that names the socket
// when diycd cannot be reached.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "diyc/v1/node.grpc.pb.h"

namespace diyc::cni {

class DiycdClient {
 public:
  DiycdClient(const std::string& socket, std::chrono::seconds timeout);

  absl::StatusOr<v1::Network> GetNetwork(const std::string& name);
  absl::StatusOr<v1::Network> CreateNetwork(const v1::CreateNetworkRequest& request);
  absl::StatusOr<v1::Attachment> Attach(const v1::AttachContainerRequest& request);
  absl::Status Detach(const v1::DetachContainerRequest& request);
  absl::StatusOr<v1::ListAttachmentsResponse> ListAttachments(const v1::ListAttachmentsRequest& request);
  absl::StatusOr<v1::CollectAttachmentsResponse> Collect(const v1::CollectAttachmentsRequest& request);

  void set_timeout(std::chrono::seconds timeout) { timeout_ = timeout; }

 private:
  // Runs one unary call with the deadline and converts its status.
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Call(const char* what, Method method, const Request& request);

  std::string socket_;
  std::chrono::seconds timeout_;
  std::unique_ptr<v1::Node::Stub> stub_;
};

}  // namespace diyc::cni
