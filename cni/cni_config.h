// What a CNI runtime hands the plugin: CNI_* environment variables, CNI_ARGS
// and the network configuration on stdin, parsed and checked.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace diyc::cni {

// The protocol versions this plugin speaks, oldest first.
const std::vector<std::string>& SupportedVersions();
inline constexpr char kLatestVersion[] = "1.1.0";
// Compares dotted versions numerically: "0.4.0" < "1.0.0".
bool VersionAtLeast(absl::string_view version, absl::string_view minimum);

struct CniEnv {
  std::string command;       // CNI_COMMAND
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS
};

// Reads CNI_* and checks that the command has what it needs: code 4
// (invalid environment) otherwise, with the spec's rules for container ids
// and interface names.
absl::StatusOr<CniEnv> ReadEnv();

// The keys of CNI_ARGS this plugin understands.
struct CniArgs {
  std::string ip;   // IP=10.88.0.5 (a prefix length is allowed)
  std::string mac;  // MAC=02:...
};
// "K=V;K2=V2": IP, MAC and IgnoreUnknown are known; another key is code 4
// unless IgnoreUnknown is 1/true.
absl::StatusOr<CniArgs> ParseCniArgs(absl::string_view args);

struct ValidAttachment {
  std::string container_id;
  std::string ifname;
};

struct NetConf {
  std::string cni_version;
  std::string name;
  std::string network;  // the diyc network; default: name
  std::string socket = "/run/diyc/diyc.sock";
  int timeout_seconds = 30;
  // For creating the diyc network on first ADD when it does not exist.
  std::string subnet, gateway, ip_range, bridge;
  uint32_t mtu = 0;
  std::optional<bool> nat;
  nlohmann::json dns;  // copied into the result; null when absent
  // runtimeConfig capabilities.
  std::vector<std::string> runtime_ips;
  std::string runtime_mac;
  nlohmann::json prev_result;  // null when absent
  std::optional<std::vector<ValidAttachment>> valid_attachments;  // GC
};

// Parses stdin: code 6 if it is not a JSON object, code 1 for a cniVersion
// not supported, code 7 for missing or wrongly typed fields. For VERSION
// only cniVersion is read (see ParseVersionRequest).
absl::StatusOr<NetConf> ParseNetConf(absl::string_view text);

// The cniVersion of a VERSION request; empty when stdin names none.
std::string ParseVersionRequest(absl::string_view text);

}  // namespace diyc::cni
