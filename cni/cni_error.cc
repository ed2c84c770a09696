#include "cni_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "nlohmann/json.hpp"

namespace diyc::cni {
namespace {

constexpr char kCodeUrl[] = "type.diyc.dev/cni-code";
constexpr char kDetailsUrl[] = "type.diyc.dev/cni-details";

}  // namespace

absl::Status CniError(CniCode code, absl::string_view msg, absl::string_view details) {
  // The canonical code only matters to code that ignores the payload.
  absl::Status status(code == kTryAgainLater ? absl::StatusCode::kUnavailable : absl::StatusCode::kInvalidArgument, msg);
  status.SetPayload(kCodeUrl, absl::Cord(std::to_string(static_cast<int>(code))));
  if (!details.empty()) status.SetPayload(kDetailsUrl, absl::Cord(details));
  return status;
}

std::optional<int> CniCodeOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kCodeUrl);
  int code = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &code)) return std::nullopt;
  return code;
}

std::string CniDetailsOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kDetailsUrl);
  return payload ? std::string(*payload) : std::string();
}

int MapToCniCode(const absl::Status& status, absl::string_view command) {
  if (std::optional<int> code = CniCodeOf(status)) return *code;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return command == "STATUS" ? kNotAvailable : kTryAgainLater;
    case absl::StatusCode::kInvalidArgument:
      return kInvalidNetworkConfig;
    case absl::StatusCode::kAlreadyExists:
      return kAlreadyExists;
    case absl::StatusCode::kResourceExhausted:
      return command == "STATUS" ? kNotAvailable : kExhausted;
    case absl::StatusCode::kFailedPrecondition:
      return kNotReady;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return kPermissionDenied;
    default:
      return kDiycdFailed;
  }
}

std::string ErrorJson(const absl::Status& status, absl::string_view command, absl::string_view cni_version) {
  nlohmann::json error = {
      {"cniVersion", std::string(cni_version)},
      {"code", MapToCniCode(status, command)},
      {"msg", std::string(status.message())},
  };
  std::string details = CniDetailsOf(status);
  if (details.empty() && !CniCodeOf(status)) details = absl::StatusCodeToString(status.code());
  if (!details.empty()) error["details"] = details;
  return error.dump();
}

}  // namespace diyc::cni
