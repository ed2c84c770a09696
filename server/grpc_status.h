// The one place core statuses become gRPC statuses.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace diyc::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace diyc::server
