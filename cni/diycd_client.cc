#include "diycd_client.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace diyc::cni {

DiycdClient::DiycdClient(const std::string& socket, std::chrono::seconds timeout)
    : socket_(socket),
      timeout_(timeout),
      stub_(v1::Node::NewStub(grpc::CreateChannel(absl::StrCat("unix:", socket), grpc::InsecureChannelCredentials()))) {}

template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> DiycdClient::Call(const char* what, Method method, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  Response response;
  grpc::Status status = (stub_.get()->*method)(&context, request, &response);
  if (status.ok()) return response;
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  if (code == absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(
        absl::StrCat("diycd is not reachable at ", socket_, " (is diycd running?): ", status.error_message()));
  }
  if (code == absl::StatusCode::kDeadlineExceeded) {
    return absl::DeadlineExceededError(
        absl::StrCat("diycd at ", socket_, " did not answer ", what, " within ", timeout_.count(), "s"));
  }
  return absl::Status(code, absl::StrCat("diycd: ", status.error_message()));
}

absl::StatusOr<v1::Network> DiycdClient::GetNetwork(const std::string& name) {
  v1::GetNetworkRequest request;
  request.set_name(name);
  return Call<v1::GetNetworkRequest, v1::Network>("GetNetwork", &v1::Node::Stub::GetNetwork, request);
}

absl::StatusOr<v1::Network> DiycdClient::CreateNetwork(const v1::CreateNetworkRequest& request) {
  return Call<v1::CreateNetworkRequest, v1::Network>("CreateNetwork", &v1::Node::Stub::CreateNetwork, request);
}

absl::StatusOr<v1::Attachment> DiycdClient::Attach(const v1::AttachContainerRequest& request) {
  return Call<v1::AttachContainerRequest, v1::Attachment>("AttachContainer", &v1::Node::Stub::AttachContainer,
                                                          request);
}

absl::Status DiycdClient::Detach(const v1::DetachContainerRequest& request) {
  return Call<v1::DetachContainerRequest, v1::DetachContainerResponse>(
             "DetachContainer", &v1::Node::Stub::DetachContainer, request)
      .status();
}

absl::StatusOr<v1::ListAttachmentsResponse> DiycdClient::ListAttachments(const v1::ListAttachmentsRequest& request) {
  return Call<v1::ListAttachmentsRequest, v1::ListAttachmentsResponse>(
      "ListAttachments", &v1::Node::Stub::ListAttachments, request);
}

absl::StatusOr<v1::CollectAttachmentsResponse> DiycdClient::Collect(const v1::CollectAttachmentsRequest& request) {
  return Call<v1::CollectAttachmentsRequest, v1::CollectAttachmentsResponse>(
      "CollectAttachments", &v1::Node::Stub::CollectAttachments, request);
}

}  // namespace diyc::cni
