// Test support: unique names and namespaces that are always removed.
#pragma once

#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/nl_socket.h"
#include "gtest/gtest.h"

namespace diyc::netcore::testing {

// "<prefix><pid><n>", short enough for an interface name, unique per process
// and run, so tests never collide with each other or with the host.
inline std::string UniqueName(absl::string_view prefix) {
  static std::atomic<int> counter{0};
  return absl::StrCat(prefix, getpid() % 100000, "x", counter++);
}

// Two fresh namespaces per test, removed in TearDown along with any host
// link the test registered, even when the test fails.
class TempNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    a_name_ = UniqueName("dca");
    b_name_ = UniqueName("dcb");
    auto a = Netns::Create(a_name_);
    ASSERT_TRUE(a.ok()) << a.status();
    a_ = *std::move(a);
    auto b = Netns::Create(b_name_);
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = *std::move(b);
    auto host = NlSocket::Open();
    ASSERT_TRUE(host.ok()) << host.status();
    host_.emplace(*std::move(host));
  }

  void TearDown() override {
    if (host_) {
      for (const std::string& link : host_links_) (void)DeleteLinkIfExists(*host_, link);
    }
    if (a_.valid()) (void)Netns::Remove(a_name_);
    if (b_.valid()) (void)Netns::Remove(b_name_);
  }

  // A host link name that TearDown deletes.
  std::string HostLink(absl::string_view prefix) {
    std::string name = UniqueName(prefix);
    host_links_.push_back(name);
    return name;
  }

  NlSocket& host() { return *host_; }

  std::string a_name_, b_name_;
  Netns a_, b_;
  std::optional<NlSocket> host_;
  std::vector<std::string> host_links_;
};

}  // namespace diyc::netcore::testing
