// Where diycd listens: a root-only unix socket, or TCP with TLS.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/server.h>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace diyc::server {

// The unix socket diycd serves on. It accepts connections itself so it can
// check each peer's credentials (SO_PEERCRED: gRPC does not expose them on
// unix sockets): only root may talk to diycd; any other uid is refused and
// logged, whatever the file mode says. Accepted connections are handed to
// the gRPC server.
class UnixListener {
 public:
  // Prepares PATH: the parent directory exists (made 0700 when diycd
  // creates it), nothing but a stale socket sits at PATH (a symlink or a
  // regular file there is refused, as is a live socket: another diycd), and
  // the socket is bound 0600 before it listens.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Open(const std::string& path);
  ~UnixListener();

  // Starts accepting into `server` (already started).
  void Serve(grpc::Server* server);
  // Stops accepting and removes the socket file.
  void Stop();
  const std::string& path() const { return path_; }

 private:
  UnixListener(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void AcceptLoop(grpc::Server* server);

  std::string path_;
  int fd_;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

struct TlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;  // empty: clients need no certificate
};

// TLS credentials for a TCP listener; INVALID_ARGUMENT without a certificate
// and key (plaintext TCP is never offered).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const TlsFiles& files);

}  // namespace diyc::server
