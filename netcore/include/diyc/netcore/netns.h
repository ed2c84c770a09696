// Network namespaces: named ones as `ip netns` makes them, and handles to any.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/unique_fd.h"

namespace diyc::netcore {

// Where named namespaces live; the directory `ip netns` uses.
inline constexpr char kNetnsRunDir[] = "/run/netns";

// An open handle to a network namespace. The namespace lives at least as long
// as the handle, even if its name is removed meanwhile.
class Netns {
 public:
  Netns() = default;
  Netns(Netns&&) = default;
  Netns& operator=(Netns&&) = default;

  // Creates a new namespace bound to /run/netns/NAME, exactly like
  // `ip netns add NAME`: ALREADY_EXISTS if the name is taken. A failure at any
  // step removes what was made.
  static absl::StatusOr<Netns> Create(absl::string_view name);
  // Creates a new namespace pinned by a bind mount at PATH (an absolute path
  // whose parent exists), for namespaces that should not show up in
  // `ip netns` (a container's). ALREADY_EXISTS if PATH exists.
  static absl::StatusOr<Netns> CreateAt(const std::string& path);
  // Unmounts and unlinks a namespace made by CreateAt (NOT_FOUND if absent).
  static absl::Status RemoveAt(const std::string& path);
  static absl::StatusOr<Netns> OpenName(absl::string_view name);
  // Any nsfs file, e.g. /proc/PID/ns/net or a bind mount elsewhere.
  static absl::StatusOr<Netns> OpenPath(absl::string_view path);
  static absl::StatusOr<Netns> OpenPid(pid_t pid);
  // The calling thread's namespace.
  static absl::StatusOr<Netns> Current();

  // Unmounts and unlinks /run/netns/NAME (NOT_FOUND if absent). Processes and
  // handles still inside keep the namespace alive.
  static absl::Status Remove(absl::string_view name);
  // Names under /run/netns, sorted.
  static absl::StatusOr<std::vector<std::string>> List();

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  // The name for named namespaces, else empty.
  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  // How to name this namespace in messages: its name, else its path.
  const std::string& label() const { return name_.empty() ? path_ : name_; }
  // True when both handles refer to the same namespace.
  absl::StatusOr<bool> SameAs(const Netns& other) const;
  Netns Dup() const;
  void Close() { fd_.Reset(); }

 private:
  Netns(UniqueFd fd, std::string name, std::string path)
      : fd_(std::move(fd)), name_(std::move(name)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::string name_;
  std::string path_;
};

// Runs fn on a fresh thread that has joined ns and exits afterwards, so no
// thread of the caller (a gRPC worker, the Python interpreter) ever changes
// namespace. Costs one thread start (tens of microseconds).
absl::Status RunInNetns(const Netns& ns, absl::FunctionRef<absl::Status()> fn);

// RunInNetns for functions that return a value.
template <typename T>
absl::StatusOr<T> RunInNetnsFor(const Netns& ns, absl::FunctionRef<absl::StatusOr<T>()> fn) {
  std::optional<absl::StatusOr<T>> result;
  absl::Status status = RunInNetns(ns, [&]() -> absl::Status {
    result.emplace(fn());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return std::move(*result);
}

}  // namespace diyc::netcore
