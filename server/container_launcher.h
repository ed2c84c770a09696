// Starting diyc-init from diycd, safely for a multithreaded gRPC server.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace diyc::server {

struct Launched {
  pid_t monitor_pid = 0;
  pid_t pid = 0;  // the container's first process, on the host
  uint64_t monitor_start_time = 0;
  uint64_t pid_start_time = 0;
};

// Runs `init_binary spec_path` with posix_spawn (vfork + exec: nothing of
// gRPC runs in a forked copy of diycd), no descriptor but the status pipe
// inherited, and waits until diyc-init reports the command started or failed.
absl::StatusOr<Launched> LaunchContainer(const std::string& init_binary, const std::string& spec_path,
                                         absl::Duration timeout);

// Field 22 of /proc/PID/stat: with the pid, it identifies a process across
// pid reuse. NOT_FOUND when the process is gone.
absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid);

}  // namespace diyc::server
