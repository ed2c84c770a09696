#include "listen.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"
#include "absl/strings/str_format.h"
#include <grpcpp/server_posix.h>
#include <poll.h>

namespace diyc::server {

using netcore::ErrnoError;
using netcore::Quote;

namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError(errno, absl::StrCat("read ", Quote(path)));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool SomeoneListens(const std::string& path) {
  netcore::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Open(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path ", Quote(path), ": must be absolute and shorter than 108 bytes"));
  }
  const std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) {
    if (mkdir(dir.c_str(), 0700) == 0) {
      chmod(dir.c_str(), 0700);  // regardless of umask
    } else if (errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("create socket directory ", Quote(dir)));
    }
    struct stat st;
    if (lstat(dir.c_str(), &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", Quote(dir)));
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("socket directory ", Quote(dir), " is not a directory"));
    }
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    // Never unlink what is not ours: a link could point anywhere.
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(Quote(path), " exists and is not a socket (a symlink or a file); refusing to replace it"));
    }
    if (SomeoneListens(path)) {
      return absl::FailedPreconditionError(absl::StrCat("another diycd is already serving on ", Quote(path)));
    }
    if (unlink(path.c_str()) != 0) return ErrnoError(errno, absl::StrCat("remove stale socket ", Quote(path)));
  } else if (errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("stat ", Quote(path)));
  }

  netcore::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError(errno, "create unix socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  // Bound under a umask that leaves no window in which others could connect.
  mode_t old_mask = umask(0177);
  int bound = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  umask(old_mask);
  if (bound != 0) return ErrnoError(bind_errno, absl::StrCat("bind ", Quote(path)));
  if (chmod(path.c_str(), 0600) != 0 || listen(fd.get(), 512) != 0) {
    int e = errno;
    unlink(path.c_str());
    return ErrnoError(e, absl::StrCat("listen on ", Quote(path)));
  }
  std::unique_ptr<UnixListener> listener(new UnixListener(path, fd.Release()));
  if (pipe2(listener->wake_, O_CLOEXEC) != 0) return ErrnoError(errno, "create pipe");
  return listener;
}

UnixListener::~UnixListener() {
  Stop();
  if (fd_ >= 0) close(fd_);
  for (int end : wake_) {
    if (end >= 0) close(end);
  }
}

void UnixListener::Serve(grpc::Server* server) { thread_ = std::thread([this, server] { AcceptLoop(server); }); }

void UnixListener::Stop() {
  if (!thread_.joinable()) return;
  (void)!write(wake_[1], "x", 1);
  thread_.join();
  unlink(path_.c_str());
}

void UnixListener::AcceptLoop(grpc::Server* server) {
  while (true) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    // gRPC expects a non-blocking socket and does not make it one.
    int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) continue;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
      absl::FPrintF(stderr, "diycd: refused connection from uid %d (pid %d): only root may use diycd\n",
                    static_cast<int>(cred.uid), static_cast<int>(cred.pid));
      close(conn);
      continue;
    }
    grpc::AddInsecureChannelFromFd(server, conn);
  }
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const TlsFiles& files) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(
        "TCP listening requires TLS: give --tls-cert and --tls-key (and --tls-client-ca to require client "
        "certificates); plaintext TCP is not supported");
  }
  grpc::SslServerCredentialsOptions options(files.client_ca.empty()
                                                ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  DIYC_ASSIGN_OR_RETURN(pair.cert_chain, ReadWholeFile(files.cert));
  DIYC_ASSIGN_OR_RETURN(pair.private_key, ReadWholeFile(files.key));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!files.client_ca.empty()) {
    DIYC_ASSIGN_OR_RETURN(options.pem_root_certs, ReadWholeFile(files.client_ca));
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace diyc::server
