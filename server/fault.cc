#include "fault.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"

namespace diyc::server {
namespace {

std::atomic<bool> armed{false};
std::string fault_name;
std::atomic<long> remaining{1};

}  // namespace

void InitFaultPoints() {
  const char* spec = std::getenv("DIYC_FAULT");
  if (spec == nullptr || *spec == '\0') return;
  std::string text = spec;
  long count = 1;
  if (size_t at = text.find('@'); at != std::string::npos) {
    if (!absl::SimpleAtoi(text.substr(at + 1), &count) || count < 1) count = 1;
    text = text.substr(0, at);
  }
  bool known = false;
  for (std::string_view point : kFaultPoints) known |= point == text;
  if (!known) {
    std::fprintf(stderr, "diycd: DIYC_FAULT names no fault point: %s\n", text.c_str());
    std::_Exit(2);
  }
  fault_name = text;
  remaining = count;
  armed = true;
  std::fprintf(stderr, "diycd: fault point %s armed (hit %ld)\n", text.c_str(), count);
}

void FaultPoint(std::string_view name) {
  if (!armed.load(std::memory_order_relaxed) || name != fault_name) return;
  if (remaining.fetch_sub(1) != 1) return;
  std::fprintf(stderr, "diycd: fault point %s reached: SIGKILL\n", fault_name.c_str());
  kill(getpid(), SIGKILL);
  pause();
}

}  // namespace diyc::server
