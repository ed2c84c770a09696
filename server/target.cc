#include "target.h"

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/validate.h"
#include "names.h"

namespace diyc::server {

using netcore::Quote;

std::string Target::Label() const {
  switch (kind) {
    case Kind::kContainer: return absl::StrCat("container ", Quote(value));
    case Kind::kNetnsPath: return absl::StrCat("netns_path ", Quote(value));
    case Kind::kNetnsName: return absl::StrCat("netns_name ", Quote(value));
    case Kind::kPid: return absl::StrCat("pid ", pid);
    case Kind::kNone: break;
  }
  return "no target";
}

Target SourceOf(const v1::ProbeRequest& m) {
  switch (m.source_case()) {
    case v1::ProbeRequest::kContainer: return {Target::Kind::kContainer, m.container(), 0};
    case v1::ProbeRequest::kNetnsPath: return {Target::Kind::kNetnsPath, m.netns_path(), 0};
    case v1::ProbeRequest::kNetnsName: return {Target::Kind::kNetnsName, m.netns_name(), 0};
    case v1::ProbeRequest::kPid: return {Target::Kind::kPid, "", m.pid()};
    default: return {};
  }
}

absl::Status ValidateTarget(const Target& target) {
  switch (target.kind) {
    case Target::Kind::kNone:
      return absl::InvalidArgumentError("a target is required: container, netns_path, netns_name or pid");
    case Target::Kind::kContainer:
      return ValidateObjectName("container", target.value);
    case Target::Kind::kNetnsName:
      return netcore::ValidateNetnsName(target.value);
    case Target::Kind::kPid:
      if (target.pid <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid pid ", target.pid));
      return absl::OkStatus();
    case Target::Kind::kNetnsPath: {
      const std::string& p = target.value;
      if (p.empty() || p[0] != '/' || p.size() > 4096 || p.find('\0') != std::string::npos ||
          p.find("/../") != std::string::npos || (p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid netns_path ", Quote(p), ": must be an absolute path"));
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown target");
}

absl::StatusOr<netcore::Netns> OpenTarget(const Target& target, const ContainerNetnsResolver& containers) {
  DIYC_RETURN_IF_ERROR(ValidateTarget(target));
  switch (target.kind) {
    case Target::Kind::kNetnsName:
      return netcore::Netns::OpenName(target.value);
    case Target::Kind::kNetnsPath: {
      absl::StatusOr<netcore::Netns> ns = netcore::Netns::OpenPath(target.value);
      // A path that no longer exists is a namespace that is gone.
      if (!ns.ok() && netcore::StatusErrno(ns.status()) == ENOENT) {
        return absl::NotFoundError(std::string(ns.status().message()));
      }
      return ns;
    }
    case Target::Kind::kPid:
      return netcore::Netns::OpenPid(target.pid);
    case Target::Kind::kContainer: {
      if (!containers) return absl::NotFoundError(absl::StrCat("container ", Quote(target.value), " not found"));
      DIYC_ASSIGN_OR_RETURN(std::string path, containers(target.value));
      return netcore::Netns::OpenPath(path);
    }
    case Target::Kind::kNone:
      break;
  }
  return absl::InvalidArgumentError("no target");
}

}  // namespace diyc::server
