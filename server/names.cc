#include "names.h"

#include <sys/random.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "diyc/netcore/errors.h"

namespace diyc::server {
namespace {

uint64_t Fnv1a(absl::string_view text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

absl::Status ValidateObjectName(absl::string_view kind, absl::string_view name) {
  auto bad = [&](absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ", kind, " name ", netcore::Quote(name), ": ", rule));
  };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > 63) return bad("longer than 63 characters");
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return bad("must start with a letter or digit");
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return bad("only letters, digits, '_', '.' and '-' are allowed");
  }
  return absl::OkStatus();
}

std::string DefaultBridgeName(absl::string_view network) {
  std::string name = absl::StrCat("diyc-", network);
  if (name.size() <= 15) return name;
  return absl::StrFormat("diyc-%010x", Fnv1a(network) & 0xffffffffffull);
}

std::string VxlanDeviceName(uint32_t vxlan_id) { return absl::StrCat("dvx", vxlan_id); }

std::string NewHostVethName() {
  uint64_t bits = 0;
  if (getrandom(&bits, sizeof(bits), 0) != sizeof(bits)) {
    static uint64_t counter = 0;
    bits = Fnv1a(absl::StrCat(reinterpret_cast<uintptr_t>(&bits), ++counter));
  }
  return absl::StrFormat("dv%013x", bits & 0xfffffffffffffull);
}

std::string NewMacAddress() {
  uint8_t b[6] = {};
  if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
    uint64_t h = Fnv1a(NewHostVethName());
    for (int i = 0; i < 6; ++i) b[i] = static_cast<uint8_t>(h >> (8 * i));
  }
  b[0] = static_cast<uint8_t>((b[0] & 0xfe) | 0x02);
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

std::string InstanceId(absl::string_view state_dir) {
  return absl::StrFormat("%06x", Fnv1a(state_dir) & 0xffffff);
}

std::string OwnerAlias(absl::string_view instance, absl::string_view network) {
  return absl::StrCat(kOwnerAliasPrefix, instance, ":", network);
}

}  // namespace diyc::server
