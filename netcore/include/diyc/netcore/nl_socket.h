// A route-netlink socket bound to one network namespace.
#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/netns.h"

struct nl_sock;
struct rtnl_link;
struct nl_cache;
struct nl_addr;
struct rtnl_addr;
struct rtnl_route;
struct sockaddr_nl;
struct nlmsgerr;

namespace diyc::netcore {

// Owners of libnl objects, so every acquisition is released on all paths.
struct NlDeleter {
  void operator()(nl_sock* p) const;
  void operator()(rtnl_link* p) const;
  void operator()(nl_cache* p) const;
  void operator()(nl_addr* p) const;
  void operator()(rtnl_addr* p) const;
  void operator()(rtnl_route* p) const;
};
using NlSockPtr = std::unique_ptr<nl_sock, NlDeleter>;
using NlLinkPtr = std::unique_ptr<rtnl_link, NlDeleter>;
using NlCachePtr = std::unique_ptr<nl_cache, NlDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlDeleter>;
using NlRtAddrPtr = std::unique_ptr<rtnl_addr, NlDeleter>;
using NlRoutePtr = std::unique_ptr<rtnl_route, NlDeleter>;

// A libnl address for an IP address with a prefix length.
NlAddrPtr ToNlAddr(const IpAddress& address, int prefix_len);

// A NETLINK_ROUTE socket. A socket stays in the namespace it was created in,
// so one opened with OpenIn() configures that namespace from any thread.
// Not thread-safe: use one per thread, or guard it.
class NlSocket {
 public:
  NlSocket(NlSocket&&) noexcept;
  NlSocket& operator=(NlSocket&&) noexcept;
  ~NlSocket();

  // A socket in the calling thread's namespace.
  static absl::StatusOr<NlSocket> Open();
  // A socket inside ns; the calling thread does not change namespace.
  static absl::StatusOr<NlSocket> OpenIn(const Netns& ns);

  nl_sock* get() const { return sock_.get(); }
  // Where the socket lives, for messages: "" for the host.
  const std::string& netns_label() const { return netns_label_; }

  // Runs one libnl request, request(nl_sock*) -> libnl code, and turns its
  // result into a status carrying the kernel's errno and explanation.
  template <typename Request>
  absl::Status Call(absl::string_view what, Request&& request) {
    ClearError();
    return Check(request(get()), what);
  }

  // Fills a libnl cache with a dump, fill(nl_sock*, nl_cache**) -> libnl
  // code, retrying a few times when a concurrent change interrupted the dump
  // (NLM_F_DUMP_INTR): such a dump is inconsistent.
  absl::StatusOr<NlCachePtr> Dump(absl::string_view what, absl::FunctionRef<int(nl_sock*, nl_cache**)> fill);

  // Call before each request; Check() then reports the kernel's own errno and
  // extended-ack message instead of libnl's coarser code.
  void ClearError();
  // OK for nl_err >= 0, else "<what>[ in netns 'x']: <kernel error>".
  absl::Status Check(int nl_err, absl::string_view what) const;

 private:
  struct ErrorSlot {
    int error_number = 0;
    std::string ext_message;
  };
  NlSocket(NlSockPtr sock, std::string netns_label);
  static int OnError(::sockaddr_nl*, ::nlmsgerr* err, void* arg);

  NlSockPtr sock_;
  std::unique_ptr<ErrorSlot> error_;
  std::string netns_label_;
};

}  // namespace diyc::netcore
