#include "diyc/netcore/nl_socket.h"

#include <linux/netlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::netcore {

void NlDeleter::operator()(nl_sock* p) const { nl_socket_free(p); }
void NlDeleter::operator()(rtnl_link* p) const { rtnl_link_put(p); }
void NlDeleter::operator()(nl_cache* p) const { nl_cache_free(p); }
void NlDeleter::operator()(nl_addr* p) const { nl_addr_put(p); }
void NlDeleter::operator()(rtnl_addr* p) const { rtnl_addr_put(p); }
void NlDeleter::operator()(rtnl_route* p) const { rtnl_route_put(p); }

NlAddrPtr ToNlAddr(const IpAddress& address, int prefix_len) {
  NlAddrPtr addr(nl_addr_build(ToAf(address.family()), address.bytes(), address.size()));
  nl_addr_set_prefixlen(addr.get(), prefix_len);
  return addr;
}

namespace {

// The errno a libnl code stands for, when the kernel's own was not captured.
int NlErrToErrno(int nl_err) {
  switch (-nl_err) {
    case NLE_EXIST: return EEXIST;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_NODEV: return ENODEV;
    case NLE_PERM: return EPERM;
    case NLE_NOACCESS: return EACCES;
    case NLE_INVAL: return EINVAL;
    case NLE_RANGE: return ERANGE;
    case NLE_NOMEM: return ENOMEM;
    case NLE_BUSY: return EBUSY;
    case NLE_AGAIN: return EAGAIN;
    case NLE_INTR: return EINTR;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_MSGSIZE: return EMSGSIZE;
    default: return 0;
  }
}

}  // namespace

NlSocket::NlSocket(NlSockPtr sock, std::string netns_label)
    : sock_(std::move(sock)), error_(std::make_unique<ErrorSlot>()), netns_label_(std::move(netns_label)) {
  nl_socket_modify_err_cb(sock_.get(), NL_CB_CUSTOM, &NlSocket::OnError, error_.get());
}

NlSocket::NlSocket(NlSocket&&) noexcept = default;
NlSocket& NlSocket::operator=(NlSocket&&) noexcept = default;
NlSocket::~NlSocket() = default;

absl::StatusOr<NlSocket> NlSocket::Open() {
  NlSockPtr sock(nl_socket_alloc());
  if (!sock) return absl::ResourceExhaustedError("allocate netlink socket");
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) return absl::InternalError(absl::StrCat("connect netlink socket: ", nl_geterror(err)));
  int fd = nl_socket_get_fd(sock.get());
  // libnl does not set close-on-exec; a container must never inherit it.
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  int one = 1;
  // Ask the kernel to explain failures ("Attribute failed policy validation").
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  // Large dumps (thousands of links) need room.
  nl_socket_set_buffer_size(sock.get(), 1 << 20, 1 << 20);
  return NlSocket(std::move(sock), "");
}

absl::StatusOr<NlSocket> NlSocket::OpenIn(const Netns& ns) {
  DIYC_ASSIGN_OR_RETURN(NlSocket sock, RunInNetnsFor<NlSocket>(ns, [] { return NlSocket::Open(); }));
  sock.netns_label_ = ns.label();
  return sock;
}

void NlSocket::ClearError() {
  error_->error_number = 0;
  error_->ext_message.clear();
}

int NlSocket::OnError(::sockaddr_nl*, ::nlmsgerr* err, void* arg) {
  auto* slot = static_cast<ErrorSlot*>(arg);
  slot->error_number = -err->error;
  slot->ext_message.clear();
  // With NETLINK_CAP_ACK the request is not echoed, so the TLVs follow the
  // header copy directly.
  auto* outer = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(err) - NLMSG_HDRLEN);
  if (outer->nlmsg_flags & NLM_F_ACK_TLVS) {
    size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nlmsgerr));
    if (!(outer->nlmsg_flags & NLM_F_CAPPED)) offset += NLMSG_ALIGN(err->msg.nlmsg_len - NLMSG_HDRLEN);
    while (offset + NLA_HDRLEN <= outer->nlmsg_len) {
      auto* attr = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(outer) + offset);
      if (attr->nla_len < NLA_HDRLEN || offset + attr->nla_len > outer->nlmsg_len) break;
      if ((attr->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
        const char* text = reinterpret_cast<const char*>(attr) + NLA_HDRLEN;
        slot->ext_message.assign(text, strnlen(text, attr->nla_len - NLA_HDRLEN));
      }
      offset += NLA_ALIGN(attr->nla_len);
    }
  }
  return NL_STOP;
}

absl::StatusOr<NlCachePtr> NlSocket::Dump(absl::string_view what,
                                          absl::FunctionRef<int(nl_sock*, nl_cache**)> fill) {
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    nl_cache* raw = nullptr;
    ClearError();
    int err = fill(get(), &raw);
    NlCachePtr cache(raw);
    if (err == -NLE_DUMP_INTR && attempt < kAttempts) continue;
    DIYC_RETURN_IF_ERROR(Check(err, what));
    return cache;
  }
}

absl::Status NlSocket::Check(int nl_err, absl::string_view what) const {
  if (nl_err >= 0) return absl::OkStatus();
  std::string context(what);
  if (!netns_label_.empty()) absl::StrAppend(&context, " in netns ", Quote(netns_label_));
  int error_number = error_->error_number != 0 ? error_->error_number : NlErrToErrno(nl_err);
  if (error_number == 0) return absl::InternalError(absl::StrCat(context, ": ", nl_geterror(nl_err)));
  return ErrnoError(error_number, context, error_->ext_message);
}

}  // namespace diyc::netcore
