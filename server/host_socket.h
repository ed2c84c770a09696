// A route-netlink socket in the host namespace for the calling thread.
#pragma once

#include "absl/status/statusor.h"
#include "diyc/netcore/nl_socket.h"

namespace diyc::server {

// One per thread and kept open (libnl sockets are not thread-safe, and
// opening one per request would cost a syscall round trip each time).
absl::StatusOr<netcore::NlSocket*> HostSocket();

}  // namespace diyc::server
