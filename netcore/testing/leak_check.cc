// A leak audit for every kernel test binary: after all tests of the process
// ran, no link, named namespace, or namespace mount made by this process
// (their names carry UniqueName's pid mark) may be left on the host.
// Namespaces are destroyed asynchronously by the kernel, so it waits a
// little before reporting.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/nl_socket.h"
#include "gtest/gtest.h"

namespace diyc::netcore::testing {
namespace {

std::string Mark() { return absl::StrCat(getpid() % 100000, "x"); }

std::vector<std::string> Leaks() {
  std::vector<std::string> leaks;
  const std::string mark = Mark();
  if (auto sock = NlSocket::Open(); sock.ok()) {
    if (auto links = ListLinks(*sock); links.ok()) {
      for (const LinkInfo& link : *links) {
        if (link.name.find(mark) != std::string::npos) leaks.push_back(absl::StrCat("link ", link.name));
      }
    }
  }
  if (auto names = Netns::List(); names.ok()) {
    for (const std::string& name : *names) {
      if (name.find(mark) != std::string::npos) leaks.push_back(absl::StrCat("netns ", name));
    }
  }
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    if (line.find("/run/netns/") != std::string::npos && line.find(mark) != std::string::npos) {
      leaks.push_back(absl::StrCat("mount ", line.substr(0, 120)));
    }
  }
  return leaks;
}

class HostLeakEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    if (geteuid() != 0) return;
    std::vector<std::string> leaks;
    for (int attempt = 0; attempt < 50; ++attempt) {
      leaks = Leaks();
      if (leaks.empty()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "the tests left host state behind: " << absl::StrJoin(leaks, "; ");
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new HostLeakEnvironment);

}  // namespace
}  // namespace diyc::netcore::testing
