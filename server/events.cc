#include "events.h"

#include <algorithm>

namespace diyc::server {

std::optional<v1::Event> EventBus::Subscription::Next(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return !queue_.empty() || closed_; });
  if (queue_.empty()) return std::nullopt;
  v1::Event event = std::move(queue_.front());
  queue_.pop_front();
  return event;
}

size_t EventBus::Subscription::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

std::shared_ptr<EventBus::Subscription> EventBus::Subscribe() {
  auto subscription = std::make_shared<Subscription>();
  std::lock_guard<std::mutex> lock(mu_);
  subscriptions_.push_back(subscription);
  return subscription;
}

void EventBus::Unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  std::lock_guard<std::mutex> lock(mu_);
  subscriptions_.erase(std::remove(subscriptions_.begin(), subscriptions_.end(), subscription),
                       subscriptions_.end());
}

void EventBus::Publish(const v1::Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : subscriptions_) {
    {
      std::lock_guard<std::mutex> sub_lock(s->mu_);
      if (s->queue_.size() >= kMaxQueued) {
        s->queue_.pop_front();
        ++s->dropped_;
      }
      s->queue_.push_back(event);
    }
    s->cv_.notify_one();
  }
}

void EventBus::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : subscriptions_) {
    {
      std::lock_guard<std::mutex> sub_lock(s->mu_);
      s->closed_ = true;
    }
    s->cv_.notify_all();
  }
}

}  // namespace diyc::server
