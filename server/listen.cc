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

absl::StatusOr<std::string> PrepareUnixSocket(const std::string& path) {
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
  // gRPC creates the socket with the process umask: no window in which it
  // is reachable by others.
  umask(0177);
  return absl::StrCat("unix:", path);
}

absl::Status RestrictUnixSocket(const std::string& path) {
  if (chmod(path.c_str(), 0600) != 0) return ErrnoError(errno, absl::StrCat("chmod ", Quote(path)));
  umask(0022);
  return absl::OkStatus();
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
