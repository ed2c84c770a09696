// Fan-out of node events to the clients streaming them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "diyc/v1/events.pb.h"

namespace diyc::server {

// Publishers never block on a slow subscriber: each has a bounded queue and
// loses its oldest events (counted) when it falls that far behind.
class EventBus {
 public:
  class Subscription {
   public:
    // The next event, or nullopt after `timeout` (so the caller can notice a
    // cancelled stream) or once the bus is closed.
    std::optional<v1::Event> Next(absl::Duration timeout);
    size_t dropped() const;

   private:
    friend class EventBus;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<v1::Event> queue_;
    size_t dropped_ = 0;
    bool closed_ = false;
  };

  static constexpr size_t kMaxQueued = 10000;

  std::shared_ptr<Subscription> Subscribe();
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);
  void Publish(const v1::Event& event);
  // Wakes every subscriber for shutdown.
  void Close();

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subscriptions_;
};

}  // namespace diyc::server
