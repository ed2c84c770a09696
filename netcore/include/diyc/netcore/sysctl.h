// Kernel parameters under /proc/sys, written directly (no `sysctl` program).
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/netns.h"

namespace diyc::netcore {

// key as `sysctl` takes it: "net.ipv4.ip_forward", or with '/' separators when
// a component holds a dot ("net/ipv4/conf/eth0.5/rp_filter"). With ns, the
// value is that namespace's (net.* keys are per namespace); nullptr: the
// calling thread's.
absl::Status WriteSysctl(const Netns* ns, absl::string_view key, absl::string_view value);
absl::StatusOr<std::string> ReadSysctl(const Netns* ns, absl::string_view key);

}  // namespace diyc::netcore
