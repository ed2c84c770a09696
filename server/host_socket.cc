#include "host_socket.h"

#include <optional>

#include "diyc/netcore/status_macros.h"

namespace diyc::server {

absl::StatusOr<netcore::NlSocket*> HostSocket() {
  thread_local std::optional<netcore::NlSocket> socket;
  if (!socket) {
    DIYC_ASSIGN_OR_RETURN(netcore::NlSocket opened, netcore::NlSocket::Open());
    socket.emplace(std::move(opened));
  }
  return &*socket;
}

}  // namespace diyc::server
