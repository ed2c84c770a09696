// Where diycd listens: a root-only unix socket, or TCP with TLS.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace diyc::server {

// Prepares PATH for a gRPC unix listener: the parent directory exists (made
// 0700 when diycd creates it), nothing but a stale socket sits at PATH
// (a symlink or a regular file there is refused, as is a live socket: another
// diycd), and the new socket will be created 0600. Returns "unix:PATH".
absl::StatusOr<std::string> PrepareUnixSocket(const std::string& path);

// Makes the socket file 0600 once it exists.
absl::Status RestrictUnixSocket(const std::string& path);

struct TlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;  // empty: clients need no certificate
};

// TLS credentials for a TCP listener; INVALID_ARGUMENT without a certificate
// and key (plaintext TCP is never offered).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const TlsFiles& files);

}  // namespace diyc::server
