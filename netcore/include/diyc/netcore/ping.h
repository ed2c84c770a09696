// A native ICMP echo client that works from inside any network namespace.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/netns.h"

namespace diyc::netcore {

struct PingOptions {
  int count = 3;
  absl::Duration timeout = absl::Seconds(1);  // how long to wait for each reply
  absl::Duration interval = absl::ZeroDuration();  // pause between requests
};

struct PingResult {
  int sent = 0;
  int received = 0;
  std::vector<double> rtts_ms;  // one per reply received
};

// Sends options.count echo requests to dst from a raw socket opened inside ns
// (nullptr: the calling thread's namespace) and collects the replies. An
// unreachable target is a result with received == 0, not an error.
absl::StatusOr<PingResult> Ping(const Netns* ns, const IpAddress& dst, const PingOptions& options = {});

}  // namespace diyc::netcore
