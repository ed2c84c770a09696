// Deferred, batched deletion of detached veths.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace diyc::server {

// Deleting a veth costs the kernel an RCU grace period (~20 ms) per
// operation, which would dominate every detach. A detach instead takes the
// host end down, off its bridge and into this reaper's link group (one
// cheap request: no traffic flows from then on), and the reaper deletes the
// whole group in one operation shortly after, sharing that cost among every
// veth detached meanwhile. Thread-safe.
class LinkReaper {
 public:
  // group: an IFLA_GROUP number used only by this diycd instance.
  explicit LinkReaper(uint32_t group);
  ~LinkReaper();  // deletes what is still pending

  uint32_t group() const { return group_; }
  // Retires a link: down, no master, moved to the group. Its deletion
  // follows within a few milliseconds. A missing link is fine.
  absl::Status Retire(const std::string& ifname);
  // Deletes every retired link now (e.g. before re-creating an interface
  // name the retired peer still holds).
  absl::Status Flush();
  bool pending() const;

 private:
  void Loop();

  const uint32_t group_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  uint64_t retired_ = 0;   // links moved to the group so far
  uint64_t reaped_ = 0;    // of those, known deleted
  bool stopping_ = false;
  std::mutex delete_mu_;   // one group delete at a time
  std::thread thread_;
};

// The link group of a diycd instance (from its instance id).
uint32_t ReaperGroupFor(const std::string& instance);

}  // namespace diyc::server
