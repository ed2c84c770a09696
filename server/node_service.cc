#include "node_service.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "diyc/netcore/errors.h"
#include "grpc_status.h"
#include "target.h"

namespace diyc::server {
namespace {

// One line per mutating request: what, on what, the outcome and how long.
class AuditLine {
 public:
  AuditLine(absl::string_view method, std::string subject)
      : method_(method), subject_(std::move(subject)), start_(absl::Now()) {}
  grpc::Status Done(const absl::Status& status) {
    absl::FPrintF(stderr, "diycd: %s %s -> %s (%.2f ms)\n", method_, subject_,
                  status.ok() ? "OK" : absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message()),
                  absl::ToDoubleMilliseconds(absl::Now() - start_));
    return ToGrpcStatus(status);
  }

 private:
  std::string method_;
  std::string subject_;
  absl::Time start_;
};

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

// Which attachment a request is about: its network, target and the
// caller's key when it has one (a detach by key has no target).
template <typename Request>
std::string Subject(const Request& req) {
  std::string subject = absl::StrCat("network=", netcore::Quote(req.network()));
  const Target target = TargetOf(req);
  if (target.kind != Target::Kind::kNone || req.key().empty()) absl::StrAppend(&subject, " ", target.Label());
  if (!req.key().empty()) absl::StrAppend(&subject, " key=", netcore::Quote(req.key()));
  return subject;
}

}  // namespace

grpc::Status NodeService::CreateNetwork(grpc::ServerContext*, const v1::CreateNetworkRequest* req,
                                        v1::Network* resp) {
  AuditLine audit("CreateNetwork", absl::StrCat("network=", netcore::Quote(req->name()), " subnet=",
                                                netcore::Quote(req->subnet())));
  absl::StatusOr<v1::Network> result = node_.CreateNetwork(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::DeleteNetwork(grpc::ServerContext*, const v1::DeleteNetworkRequest* req,
                                        v1::DeleteNetworkResponse*) {
  AuditLine audit("DeleteNetwork", absl::StrCat("network=", netcore::Quote(req->name()), req->force() ? " force" : ""));
  return audit.Done(node_.DeleteNetwork(*req));
}

grpc::Status NodeService::GetNetwork(grpc::ServerContext*, const v1::GetNetworkRequest* req, v1::Network* resp) {
  return Reply(node_.GetNetwork(*req), resp);
}

grpc::Status NodeService::ListNetworks(grpc::ServerContext*, const v1::ListNetworksRequest* req,
                                       v1::ListNetworksResponse* resp) {
  return Reply(node_.ListNetworks(*req), resp);
}

grpc::Status NodeService::AttachContainer(grpc::ServerContext*, const v1::AttachContainerRequest* req,
                                          v1::Attachment* resp) {
  AuditLine audit("AttachContainer", Subject(*req));
  absl::StatusOr<v1::Attachment> result = node_.Attach(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::DetachContainer(grpc::ServerContext*, const v1::DetachContainerRequest* req,
                                          v1::DetachContainerResponse*) {
  AuditLine audit("DetachContainer", Subject(*req));
  return audit.Done(node_.Detach(*req));
}

grpc::Status NodeService::ListAttachments(grpc::ServerContext*, const v1::ListAttachmentsRequest* req,
                                          v1::ListAttachmentsResponse* resp) {
  return Reply(node_.ListAttachments(*req), resp);
}

grpc::Status NodeService::CollectAttachments(grpc::ServerContext*, const v1::CollectAttachmentsRequest* req,
                                             v1::CollectAttachmentsResponse* resp) {
  AuditLine audit("CollectAttachments", absl::StrCat("network=", netcore::Quote(req->network()), " valid=",
                                                     req->valid_size()));
  absl::StatusOr<v1::CollectAttachmentsResponse> result = node_.CollectAttachments(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::AddPeer(grpc::ServerContext*, const v1::AddPeerRequest* req, v1::Network* resp) {
  AuditLine audit("AddPeer", absl::StrCat("network=", netcore::Quote(req->network()), " peer=",
                                          netcore::Quote(req->address())));
  absl::StatusOr<v1::Network> result = node_.AddPeer(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::RemovePeer(grpc::ServerContext*, const v1::RemovePeerRequest* req, v1::Network* resp) {
  AuditLine audit("RemovePeer", absl::StrCat("network=", netcore::Quote(req->network()), " peer=",
                                             netcore::Quote(req->address())));
  absl::StatusOr<v1::Network> result = node_.RemovePeer(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::Check(grpc::ServerContext*, const v1::CheckRequest*, v1::CheckResponse* resp) {
  return Reply(node_.Check(), resp);
}

grpc::Status NodeService::Repair(grpc::ServerContext*, const v1::RepairRequest*, v1::RepairResponse* resp) {
  AuditLine audit("Repair", "");
  absl::StatusOr<v1::RepairResponse> result = node_.Repair();
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::Probe(grpc::ServerContext*, const v1::ProbeRequest* req, v1::ProbeResponse* resp) {
  return Reply(node_.Probe(*req), resp);
}

grpc::Status NodeService::ImportImage(grpc::ServerContext*, const v1::ImportImageRequest* req, v1::Image* resp) {
  AuditLine audit("ImportImage", absl::StrCat("image=", netcore::Quote(req->name())));
  absl::StatusOr<v1::Image> result = containers_.ImportImage(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::ListImages(grpc::ServerContext*, const v1::ListImagesRequest*, v1::ListImagesResponse* resp) {
  return Reply(containers_.ListImages(), resp);
}

grpc::Status NodeService::RemoveImage(grpc::ServerContext*, const v1::RemoveImageRequest* req,
                                      v1::RemoveImageResponse*) {
  AuditLine audit("RemoveImage", absl::StrCat("image=", netcore::Quote(req->name())));
  return audit.Done(containers_.RemoveImage(*req));
}

grpc::Status NodeService::RunContainer(grpc::ServerContext*, const v1::RunContainerRequest* req, v1::Container* resp) {
  AuditLine audit("RunContainer", absl::StrCat("container=", netcore::Quote(req->name()), " image=",
                                               netcore::Quote(req->image())));
  absl::StatusOr<v1::Container> result = containers_.Run(*req);
  if (result.ok()) *resp = *result;
  return audit.Done(result.status());
}

grpc::Status NodeService::GetContainer(grpc::ServerContext*, const v1::GetContainerRequest* req, v1::Container* resp) {
  return Reply(containers_.Get(*req), resp);
}

grpc::Status NodeService::ListContainers(grpc::ServerContext*, const v1::ListContainersRequest* req,
                                         v1::ListContainersResponse* resp) {
  return Reply(containers_.List(*req), resp);
}

grpc::Status NodeService::WaitContainer(grpc::ServerContext* ctx, const v1::WaitContainerRequest* req,
                                        v1::WaitContainerResponse* resp) {
  return Reply(containers_.Wait(*req, [&] { return ctx->IsCancelled() || shutting_down_; }), resp);
}

grpc::Status NodeService::StopContainer(grpc::ServerContext*, const v1::StopContainerRequest* req,
                                        v1::StopContainerResponse*) {
  AuditLine audit("StopContainer", absl::StrCat("container=", netcore::Quote(req->name())));
  return audit.Done(containers_.Stop(*req));
}

grpc::Status NodeService::RemoveContainer(grpc::ServerContext*, const v1::RemoveContainerRequest* req,
                                          v1::RemoveContainerResponse*) {
  AuditLine audit("RemoveContainer", absl::StrCat("container=", netcore::Quote(req->name()), req->force() ? " force" : ""));
  return audit.Done(containers_.Remove(*req));
}

grpc::Status NodeService::ContainerLogs(grpc::ServerContext* ctx, const v1::ContainerLogsRequest* req,
                                        grpc::ServerWriter<v1::LogChunk>* writer) {
  return ToGrpcStatus(containers_.Logs(
      *req, [&](const v1::LogChunk& chunk) { return writer->Write(chunk); },
      [&] { return ctx->IsCancelled() || shutting_down_; }));
}

grpc::Status NodeService::Events(grpc::ServerContext* ctx, const v1::EventsRequest* req,
                                 grpc::ServerWriter<v1::Event>* writer) {
  auto subscription = node_.events().Subscribe();
  while (!ctx->IsCancelled() && !shutting_down_) {
    std::optional<v1::Event> event = subscription->Next(absl::Milliseconds(250));
    if (!event) continue;
    if (!req->network().empty() && event->network() != req->network()) continue;
    if (!req->container().empty() && event->container().name() != req->container() &&
        !(event->has_attachment() && event->attachment().container() == req->container())) {
      continue;
    }
    if (!writer->Write(*event)) break;
  }
  node_.events().Unsubscribe(subscription);
  return grpc::Status::OK;
}

}  // namespace diyc::server
