// CNI errors: the spec's numeric codes carried on absl::Status, the mapping
// of diycd's gRPC codes onto them, and the error JSON a plugin prints.
//
// Codes (spec 1.1.0 section "Error"; 100 and up are this plugin's own):
//    1  incompatible CNI version (unsupported cniVersion; CHECK before 0.4.0,
//       GC/STATUS before 1.1.0)
//    3  unknown container: ADD's CNI_NETNS does not exist
//    4  invalid environment variables (missing CNI_*; malformed CNI_ARGS or
//       an unknown CNI_ARGS key without IgnoreUnknown=1)
//    5  I/O failure (reading stdin)
//    6  failure to decode content (stdin is not JSON)
//    7  invalid network configuration (missing or wrongly typed fields; the
//       diyc network does not exist and no "subnet" is given to create it;
//       diycd's INVALID_ARGUMENT, e.g. a static IP outside the subnet)
//   11  try again later: diycd unreachable or too slow (gRPC UNAVAILABLE or
//       DEADLINE_EXCEEDED) for ADD, DEL, CHECK and GC; a network another
//       ADD is creating not ready within 5 s
//   50  plugin not available (STATUS only): diycd unreachable, or the
//       network has no free address
//  100  diycd failed (INTERNAL, UNKNOWN and any code not listed here)
//  101  already exists: the (container id, ifname) pair or the static IP
//       is taken (ALREADY_EXISTS)
//  102  no free address, or the bridge is full (RESOURCE_EXHAUSTED)
//  103  the network cannot take attachments now (FAILED_PRECONDITION, e.g.
//       being deleted, bridge missing)
//  104  permission denied on diycd's socket (PERMISSION_DENIED)
//  110  CHECK found drift between prevResult, diycd and the kernel
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace diyc::cni {

enum CniCode : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidNetworkConfig = 7,
  kTryAgainLater = 11,
  kNotAvailable = 50,
  kLimitedConnectivity = 51,
  kDiycdFailed = 100,
  kAlreadyExists = 101,
  kExhausted = 102,
  kNotReady = 103,
  kPermissionDenied = 104,
  kDrift = 110,
};

// A status carrying an explicit CNI code (and optional details), which wins
// over the mapping of its canonical code.
absl::Status CniError(CniCode code, absl::string_view msg, absl::string_view details = "");

// The CNI code a status carries, if it carries one.
std::optional<int> CniCodeOf(const absl::Status& status);
std::string CniDetailsOf(const absl::Status& status);

// How a failed diycd call maps for the running command (see the table above).
int MapToCniCode(const absl::Status& status, absl::string_view command);

// {"cniVersion","code","msg","details"} as printed on stdout.
std::string ErrorJson(const absl::Status& status, absl::string_view command, absl::string_view cni_version);

}  // namespace diyc::cni
