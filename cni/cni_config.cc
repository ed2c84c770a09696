#include "cni_config.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cni_error.h"

namespace diyc::cni {
namespace {

using nlohmann::json;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

bool Alnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

// The spec: "must start with an alphanumeric character, optionally followed
// by any combination of one or more alphanumeric characters, underscore,
// dot or hyphen".
absl::Status ValidateContainerId(const std::string& id) {
  if (id.empty()) return CniError(kInvalidEnvironment, "CNI_CONTAINERID is required");
  bool ok = Alnum(id[0]) && id.size() <= 255;
  for (char c : id) ok = ok && (Alnum(c) || c == '_' || c == '.' || c == '-');
  if (!ok) return CniError(kInvalidEnvironment, "CNI_CONTAINERID has invalid characters", id);
  return absl::OkStatus();
}

// The spec's rules for CNI_IFNAME (those of the kernel).
absl::Status ValidateIfName(const std::string& name) {
  if (name.empty()) return CniError(kInvalidEnvironment, "CNI_IFNAME is required");
  bool ok = name.size() <= 15 && name != "." && name != "..";
  for (char c : name) ok = ok && c != '/' && c != ':' && !absl::ascii_isspace(static_cast<unsigned char>(c));
  if (!ok) return CniError(kInvalidEnvironment, "CNI_IFNAME is not a valid interface name", name);
  return absl::OkStatus();
}

absl::Status BadField(absl::string_view field, absl::string_view want) {
  return CniError(kInvalidNetworkConfig, absl::StrCat("network configuration field \"", field, "\" must be ", want));
}

// Reads an optional string field.
absl::Status GetString(const json& conf, const char* field, std::string* out) {
  auto it = conf.find(field);
  if (it == conf.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return BadField(field, "a string");
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ParseRuntimeConfig(const json& conf, NetConf* net) {
  auto rc = conf.find("runtimeConfig");
  if (rc == conf.end() || rc->is_null()) return absl::OkStatus();
  if (!rc->is_object()) return BadField("runtimeConfig", "an object");
  if (auto ips = rc->find("ips"); ips != rc->end() && !ips->is_null()) {
    if (!ips->is_array()) return BadField("runtimeConfig.ips", "an array of strings");
    for (const json& ip : *ips) {
      if (!ip.is_string()) return BadField("runtimeConfig.ips", "an array of strings");
      net->runtime_ips.push_back(ip.get<std::string>());
    }
  }
  if (auto mac = rc->find("mac"); mac != rc->end() && !mac->is_null()) {
    if (!mac->is_string()) return BadField("runtimeConfig.mac", "a string");
    net->runtime_mac = mac->get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status ParseValidAttachments(const json& conf, NetConf* net) {
  auto valid = conf.find("cni.dev/valid-attachments");
  if (valid == conf.end() || valid->is_null()) return absl::OkStatus();
  if (!valid->is_array()) return BadField("cni.dev/valid-attachments", "an array");
  net->valid_attachments.emplace();
  for (const json& entry : *valid) {
    if (!entry.is_object() || !entry.contains("containerID") || !entry["containerID"].is_string() ||
        !entry.contains("ifname") || !entry["ifname"].is_string()) {
      return BadField("cni.dev/valid-attachments", "an array of {\"containerID\", \"ifname\"} objects");
    }
    net->valid_attachments->push_back({entry["containerID"].get<std::string>(), entry["ifname"].get<std::string>()});
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& SupportedVersions() {
  static const std::vector<std::string> versions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return versions;
}

bool VersionAtLeast(absl::string_view version, absl::string_view minimum) {
  auto parts = [](absl::string_view v) {
    std::vector<int> numbers;
    for (absl::string_view part : absl::StrSplit(v, '.')) {
      int n = 0;
      (void)absl::SimpleAtoi(part, &n);
      numbers.push_back(n);
    }
    numbers.resize(3);
    return numbers;
  };
  return parts(version) >= parts(minimum);
}

absl::StatusOr<CniEnv> ReadEnv() {
  CniEnv env{.command = Env("CNI_COMMAND"),
             .container_id = Env("CNI_CONTAINERID"),
             .netns = Env("CNI_NETNS"),
             .ifname = Env("CNI_IFNAME"),
             .args = Env("CNI_ARGS")};
  const std::string& c = env.command;
  if (c.empty()) return CniError(kInvalidEnvironment, "CNI_COMMAND is required");
  if (c != "ADD" && c != "DEL" && c != "CHECK" && c != "GC" && c != "STATUS" && c != "VERSION") {
    return CniError(kInvalidEnvironment, absl::StrCat("unknown CNI_COMMAND ", c));
  }
  if (c == "ADD" || c == "DEL" || c == "CHECK") {
    if (absl::Status s = ValidateContainerId(env.container_id); !s.ok()) return s;
    if (absl::Status s = ValidateIfName(env.ifname); !s.ok()) return s;
  }
  if ((c == "ADD" || c == "CHECK") && env.netns.empty()) {
    return CniError(kInvalidEnvironment, absl::StrCat("CNI_NETNS is required for ", c));
  }
  // Only the verbs that use the namespace check it: runtimes fill unused
  // variables with placeholders (libcni sends VERSION with CNI_NETNS=dummy).
  const bool uses_netns = c == "ADD" || c == "DEL" || c == "CHECK";
  if (uses_netns && !env.netns.empty() && env.netns[0] != '/') {
    return CniError(kInvalidEnvironment, "CNI_NETNS must be an absolute path", env.netns);
  }
  return env;
}

absl::StatusOr<CniArgs> ParseCniArgs(absl::string_view args) {
  CniArgs parsed;
  std::vector<std::string> unknown;
  bool ignore_unknown = false;
  for (absl::string_view pair : absl::StrSplit(args, ';', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return CniError(kInvalidEnvironment, "CNI_ARGS must be KEY=VALUE pairs separated by ';'", std::string(pair));
    }
    if (kv[0] == "IP") {
      parsed.ip = std::string(kv[1]);
    } else if (kv[0] == "MAC") {
      parsed.mac = std::string(kv[1]);
    } else if (kv[0] == "IgnoreUnknown") {
      ignore_unknown = absl::EqualsIgnoreCase(kv[1], "true") || kv[1] == "1";
    } else {
      unknown.emplace_back(kv[0]);
    }
  }
  if (!unknown.empty() && !ignore_unknown) {
    return CniError(kInvalidEnvironment, absl::StrCat("CNI_ARGS has unknown keys (set IgnoreUnknown=1 to allow them): ",
                                                      absl::StrJoin(unknown, ", ")));
  }
  return parsed;
}

absl::StatusOr<NetConf> ParseNetConf(absl::string_view text) {
  json conf = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (conf.is_discarded() || !conf.is_object()) {
    return CniError(kDecodeFailure, "the network configuration on stdin is not a JSON object");
  }
  NetConf net;
  if (absl::Status s = GetString(conf, "cniVersion", &net.cni_version); !s.ok()) return s;
  if (net.cni_version.empty()) return CniError(kInvalidNetworkConfig, "the network configuration has no cniVersion");
  const std::vector<std::string>& supported = SupportedVersions();
  if (std::find(supported.begin(), supported.end(), net.cni_version) == supported.end()) {
    return CniError(kIncompatibleVersion, absl::StrCat("cniVersion ", net.cni_version, " is not supported"),
                    absl::StrCat("supported: ", absl::StrJoin(supported, ", ")));
  }
  for (auto [field, out] : {std::pair{"name", &net.name}, {"network", &net.network}, {"socket", &net.socket},
                            {"subnet", &net.subnet}, {"gateway", &net.gateway}, {"ipRange", &net.ip_range},
                            {"bridge", &net.bridge}}) {
    if (absl::Status s = GetString(conf, field, out); !s.ok()) return s;
  }
  if (net.name.empty()) return CniError(kInvalidNetworkConfig, "the network configuration has no name");
  if (net.network.empty()) net.network = net.name;
  if (net.socket.empty() || net.socket[0] != '/') return BadField("socket", "an absolute path");
  if (auto mtu = conf.find("mtu"); mtu != conf.end() && !mtu->is_null()) {
    if (!mtu->is_number_unsigned() || mtu->get<uint64_t>() > 65535) return BadField("mtu", "a number up to 65535");
    net.mtu = mtu->get<uint32_t>();
  }
  if (auto nat = conf.find("nat"); nat != conf.end() && !nat->is_null()) {
    if (!nat->is_boolean()) return BadField("nat", "true or false");
    net.nat = nat->get<bool>();
  }
  if (auto timeout = conf.find("timeoutSeconds"); timeout != conf.end() && !timeout->is_null()) {
    if (!timeout->is_number_unsigned() || timeout->get<uint64_t>() < 1 || timeout->get<uint64_t>() > 3600) {
      return BadField("timeoutSeconds", "a number of seconds, 1..3600");
    }
    net.timeout_seconds = timeout->get<int>();
  }
  if (auto dns = conf.find("dns"); dns != conf.end() && !dns->is_null()) {
    if (!dns->is_object()) return BadField("dns", "an object");
    net.dns = *dns;
  }
  if (auto prev = conf.find("prevResult"); prev != conf.end() && !prev->is_null()) {
    if (!prev->is_object()) return BadField("prevResult", "an object");
    net.prev_result = *prev;
  }
  if (absl::Status s = ParseRuntimeConfig(conf, &net); !s.ok()) return s;
  if (absl::Status s = ParseValidAttachments(conf, &net); !s.ok()) return s;
  return net;
}

std::string ParseVersionRequest(absl::string_view text) {
  json conf = json::parse(text.begin(), text.end(), nullptr, false);
  if (conf.is_object() && conf.contains("cniVersion") && conf["cniVersion"].is_string()) {
    return conf["cniVersion"].get<std::string>();
  }
  return "";
}

}  // namespace diyc::cni
