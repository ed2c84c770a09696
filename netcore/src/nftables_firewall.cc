// The Firewall over libnftables: the one place in diyc that talks to
// nf_tables. Scripts and the drift check are pure (nft_ruleset.cc,
// nft_check.cc); this file only submits and lists.
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"

namespace diyc::netcore {
namespace {

struct NftCtxDeleter {
  void operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }
};
using NftCtxPtr = std::unique_ptr<nft_ctx, NftCtxDeleter>;

// libnftables keeps process-wide state besides its contexts (a one-time
// initialisation, the interface cache each command fills and releases), so
// two firewalls must not run commands at the same time even on different
// contexts.
std::mutex& LibraryMutex() {
  static std::mutex* mutex = new std::mutex;
  return *mutex;
}

// libnftables' error text spans lines: the message, the offending command and
// a line of carets under it, for each of up to ten errors. One line of it
// keeps a status one line; the first errors are the cause, the rest cascade.
std::string OneLine(absl::string_view text) {
  constexpr size_t kMaxLength = 1000;
  std::vector<absl::string_view> kept;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.find_first_not_of("^~ ") == absl::string_view::npos) continue;
    kept.push_back(line);
  }
  std::string joined = absl::StrJoin(kept, "; ");
  if (joined.size() > kMaxLength) joined = absl::StrCat(joined.substr(0, kMaxLength), "...");
  return joined;
}

// nft reports the kernel's errors as strerror text only.
absl::StatusCode NftErrorCode(absl::string_view error) {
  if (absl::StrContains(error, "Operation not permitted")) return absl::StatusCode::kPermissionDenied;
  if (absl::StrContains(error, "Device or resource busy") || absl::StrContains(error, "Interrupted") ||
      absl::StrContains(error, "Resource temporarily unavailable")) {
    return absl::StatusCode::kUnavailable;
  }
  // The script is generated from validated values: a refusal is the kernel
  // lacking a feature or a bug in diyc, not the caller's fault.
  return absl::StatusCode::kInternal;
}

// A libnftables context with output and errors captured, for one call.
// nft_ctx_new opens its netlink socket at once, in the namespace of the
// calling thread, so a session is made and used on the thread that is in the
// right namespace. That socket lacks SOCK_CLOEXEC (libnftables offers no
// flag), which is one more reason to keep sessions short: a child forked
// meanwhile must close inherited descriptors before exec anyway.
class NftSession {
 public:
  static absl::StatusOr<NftSession> Open() {
    // libnftables calls exit() when it cannot open its socket (no nf_tables
    // in the kernel, descriptors exhausted); a probe first makes that an error.
    UniqueFd probe(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
    if (!probe) return ErrnoError(errno, "open nftables netlink socket");
    probe.Reset();
    NftCtxPtr ctx(nft_ctx_new(NFT_CTX_DEFAULT));
    if (ctx == nullptr) return absl::ResourceExhaustedError("create nftables context");
    if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
      return absl::InternalError("capture nftables output");
    }
    return NftSession(std::move(ctx));
  }

  // Runs commands as one transaction and returns what they printed.
  absl::StatusOr<std::string> Run(const std::string& commands, absl::string_view what) {
    const int rc = nft_run_cmd_from_buffer(ctx_.get(), commands.c_str());
    // Reading a buffer also empties it, for the next command.
    std::string output = nft_ctx_get_output_buffer(ctx_.get());
    std::string error = OneLine(nft_ctx_get_error_buffer(ctx_.get()));
    if (rc != 0) {
      if (error.empty()) error = "failed without a message";
      return absl::Status(NftErrorCode(error), absl::StrCat(what, ": ", error));
    }
    return output;
  }

 private:
  explicit NftSession(NftCtxPtr ctx) : ctx_(std::move(ctx)) {}
  NftCtxPtr ctx_;
};

class NftablesFirewall final : public Firewall {
 public:
  NftablesFirewall(std::string table, const Netns* netns) : table_(std::move(table)), netns_(netns) {}

  absl::Status Apply(const std::vector<FirewallNetwork>& networks) override {
    DIYC_RETURN_IF_ERROR(ValidateNftTableName(table_));
    DIYC_RETURN_IF_ERROR(ValidateFirewallNetworks(networks));
    const std::string script = RenderNftRuleset(table_, networks);
    return InNetns([&]() -> absl::Status {
      DIYC_ASSIGN_OR_RETURN(NftSession nft, NftSession::Open());
      return nft.Run(script, Where("apply nftables ruleset")).status();
    });
  }

  absl::StatusOr<std::vector<std::string>> Check(const std::vector<FirewallNetwork>& networks) override {
    DIYC_RETURN_IF_ERROR(ValidateNftTableName(table_));
    DIYC_RETURN_IF_ERROR(ValidateFirewallNetworks(networks));
    DIYC_ASSIGN_OR_RETURN(std::optional<std::string> listing,
                          InNetnsFor<std::optional<std::string>>([&] { return ReadTable(); }));
    return DiffNftTable(table_, networks, listing);
  }

 private:
  // The table's text listing, nullopt if it does not exist. Asking for the
  // list of tables first tells "absent" apart from a failed listing.
  absl::StatusOr<std::optional<std::string>> ReadTable() {
    DIYC_ASSIGN_OR_RETURN(NftSession nft, NftSession::Open());
    DIYC_ASSIGN_OR_RETURN(std::string tables, nft.Run("list tables inet", Where("list nftables tables")));
    const std::string wanted = absl::StrCat("table inet ", table_);
    bool present = false;
    for (absl::string_view line : absl::StrSplit(tables, '\n')) {
      if (absl::StripAsciiWhitespace(line) == wanted) present = true;
    }
    if (!present) return std::nullopt;
    return nft.Run(absl::StrCat("list table inet ", table_), Where("list nftables table"));
  }

  // Runs fn under the library lock, in netns_ when set (on a fresh thread,
  // where the session is then made and used), else on the calling thread.
  absl::Status InNetns(absl::FunctionRef<absl::Status()> fn) {
    std::lock_guard<std::mutex> lock(LibraryMutex());
    if (netns_ == nullptr) return fn();
    return RunInNetns(*netns_, fn);
  }
  template <typename T>
  absl::StatusOr<T> InNetnsFor(absl::FunctionRef<absl::StatusOr<T>()> fn) {
    std::lock_guard<std::mutex> lock(LibraryMutex());
    if (netns_ == nullptr) return fn();
    return RunInNetnsFor<T>(*netns_, fn);
  }

  std::string Where(absl::string_view what) const {
    if (netns_ == nullptr) return std::string(what);
    return absl::StrCat(what, " in netns ", Quote(netns_->label()));
  }

  const std::string table_;
  const Netns* const netns_;
};

}  // namespace

std::unique_ptr<Firewall> MakeNftablesFirewall(std::string table, const Netns* netns) {
  return std::make_unique<NftablesFirewall>(std::move(table), netns);
}

}  // namespace diyc::netcore
