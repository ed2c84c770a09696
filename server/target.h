// The namespace a request points at: a container, an nsfs path, a named
// namespace or a process.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "diyc/netcore/netns.h"
#include "diyc/v1/network.pb.h"

namespace diyc::server {

struct Target {
  enum class Kind { kNone, kContainer, kNetnsPath, kNetnsName, kPid };
  Kind kind = Kind::kNone;
  std::string value;  // container id, path or name
  int pid = 0;

  // "netns_name 'x'", "pid 42", ... for messages.
  std::string Label() const;
  bool operator==(const Target& other) const {
    return kind == other.kind && value == other.value && pid == other.pid;
  }
};

// Reads the `target` oneof of an attach/detach request or an attachment.
template <typename Message>
Target TargetOf(const Message& m) {
  Target t;
  switch (m.target_case()) {
    case Message::kContainer:
      t = {Target::Kind::kContainer, m.container(), 0};
      break;
    case Message::kNetnsPath:
      t = {Target::Kind::kNetnsPath, m.netns_path(), 0};
      break;
    case Message::kNetnsName:
      t = {Target::Kind::kNetnsName, m.netns_name(), 0};
      break;
    case Message::kPid:
      t = {Target::Kind::kPid, "", m.pid()};
      break;
    default:
      break;
  }
  return t;
}

// The same for ProbeRequest's `source` oneof.
Target SourceOf(const v1::ProbeRequest& request);

template <typename Message>
void SetTarget(const Target& t, Message* m) {
  switch (t.kind) {
    case Target::Kind::kContainer: m->set_container(t.value); break;
    case Target::Kind::kNetnsPath: m->set_netns_path(t.value); break;
    case Target::Kind::kNetnsName: m->set_netns_name(t.value); break;
    case Target::Kind::kPid: m->set_pid(t.pid); break;
    case Target::Kind::kNone: break;
  }
}

// INVALID_ARGUMENT unless exactly a well-formed target is given.
absl::Status ValidateTarget(const Target& target);

// Finds a container's network namespace path; NOT_FOUND for unknown ids.
using ContainerNetnsResolver = std::function<absl::StatusOr<std::string>(const std::string& container)>;

// Opens the target's namespace: NOT_FOUND when it does not exist.
absl::StatusOr<netcore::Netns> OpenTarget(const Target& target, const ContainerNetnsResolver& containers);

}  // namespace diyc::server
