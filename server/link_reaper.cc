#include "link_reaper.h"

#include <chrono>

#include "diyc/netcore/link.h"
#include "diyc/netcore/status_macros.h"
#include "host_socket.h"

namespace diyc::server {
namespace {

// How long a retired link may wait for others to share its deletion.
constexpr auto kBatchWindow = std::chrono::milliseconds(5);

}  // namespace

uint32_t ReaperGroupFor(const std::string& instance) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : instance) hash = (hash ^ c) * 16777619u;
  // High bit set: far from the small group numbers people assign by hand.
  return 0x80000000u | (hash & 0x7fffffffu);
}

LinkReaper::LinkReaper(uint32_t group) : group_(group), thread_([this] { Loop(); }) {}

LinkReaper::~LinkReaper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  (void)Flush();
}

absl::Status LinkReaper::Retire(const std::string& ifname) {
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  absl::Status status = netcore::ChangeLink(*host, ifname, {.master_index = 0, .up = false, .group = group_});
  if (absl::IsNotFound(status)) return absl::OkStatus();
  DIYC_RETURN_IF_ERROR(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++retired_;
  }
  wake_.notify_all();
  return absl::OkStatus();
}

bool LinkReaper::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reaped_ < retired_;
}

absl::Status LinkReaper::Flush() {
  std::lock_guard<std::mutex> one_at_a_time(delete_mu_);
  uint64_t covered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    covered = retired_;
  }
  DIYC_ASSIGN_OR_RETURN(netcore::NlSocket * host, HostSocket());
  // Everything retired before this point is in the group now.
  DIYC_RETURN_IF_ERROR(netcore::DeleteLinkGroup(*host, group_));
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_ < covered) reaped_ = covered;
  return absl::OkStatus();
}

void LinkReaper::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait(lock, [&] { return stopping_ || reaped_ < retired_; });
    if (stopping_) break;
    lock.unlock();
    std::this_thread::sleep_for(kBatchWindow);
    (void)Flush();
    lock.lock();
  }
}

}  // namespace diyc::server
