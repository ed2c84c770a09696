// The CNI verbs of diyc-cni. Each returns what goes on stdout (empty for
// verbs without output) or a status that main turns into the error JSON.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cni_config.h"

namespace diyc::cni {

// ADD: attaches CNI_NETNS to the diyc network under key CNI_CONTAINERID and
// ifname CNI_IFNAME (creating the network first when it does not exist and
// the configuration gives a subnet); prints the result.
absl::StatusOr<std::string> Add(const CniEnv& env, const NetConf& conf);
// DEL: detaches by key and ifname; OK when nothing is attached any more.
absl::StatusOr<std::string> Del(const CniEnv& env, const NetConf& conf);
// CHECK: compares prevResult, diycd's record and the kernel.
absl::StatusOr<std::string> Check(const CniEnv& env, const NetConf& conf);
// GC: detaches the network's keyed attachments not in valid-attachments.
absl::StatusOr<std::string> Gc(const CniEnv& env, const NetConf& conf);
// STATUS: OK when an ADD could succeed now.
absl::StatusOr<std::string> Status(const CniEnv& env, const NetConf& conf);

// {"cniVersion", "supportedVersions"} for VERSION.
std::string VersionJson(const std::string& requested);

}  // namespace diyc::cni
