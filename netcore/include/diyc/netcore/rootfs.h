// A container's root filesystem and mount namespace, set up from inside the
// container's first process before it execs the command.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace diyc::netcore {

struct RootfsOptions {
  std::string lower_dir;   // the image, read-only
  std::string upper_dir;   // the container's writable layer
  std::string work_dir;    // overlayfs scratch, same filesystem as upper_dir
  std::string rootfs_dir;  // empty directory where the overlay is mounted
  // Written into the container's /etc (its writable layer).
  std::string hostname;
  std::string hosts;
  std::string resolv_conf;
};

// Must run in a single-threaded process that already has its own mount, PID
// and UTS namespaces (e.g. the child of clone(CLONE_NEWNS|CLONE_NEWPID|...)).
// Makes every mount private (nothing propagates to the host), mounts the
// overlay, a fresh /proc, a minimal /dev on tmpfs (null, zero, full, random,
// urandom, tty, pts, shm; never the host's devtmpfs), a read-only /sys, masks
// kernel files that leak host information, writes /etc/hostname, /etc/hosts
// and /etc/resolv.conf, then pivot_roots into the overlay and detaches the
// old root. On return the process runs in "/" of the container.
absl::Status SetupRootfs(const RootfsOptions& options);

// Overlayfs takes its directories in one comma-separated option string:
// INVALID_ARGUMENT for paths that could inject another option.
absl::Status ValidateOverlayPath(const std::string& path);

}  // namespace diyc::netcore
