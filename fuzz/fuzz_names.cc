// The name validators of netcore and diycd on arbitrary bytes, each checked
// against the rule it documents: whatever is accepted must be safe as an
// interface name, a path component, a sysctl path or an nft string.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/image.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/validate.h"
#include "fuzz/fuzz_check.h"
#include "server/names.h"
#include "server/target.h"

namespace {

using diyc::server::Target;

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool IsNameChar(char c) { return IsAlnum(c) || c == '_' || c == '.' || c == '-'; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
bool IsControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
bool MatchesObjectName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !IsAlnum(name[0])) return false;
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

void CheckIfName(absl::string_view name) {
  if (!diyc::netcore::ValidateIfName(name).ok()) return;
  FUZZ_CHECK(name.size() >= 1 && name.size() <= 15, name);
  for (char c : name) {
    FUZZ_CHECK(c != '/' && c != ':' && c != '\0' && !IsSpace(c) && !IsControl(c), name);
  }
  FUZZ_CHECK(name != "." && name != ".." && name != "all" && name != "default", name);
}

void CheckNetnsName(absl::string_view name) {
  if (!diyc::netcore::ValidateNetnsName(name).ok()) return;
  FUZZ_CHECK(name.size() >= 1 && name.size() <= 255, name);
  for (char c : name) FUZZ_CHECK(c != '/' && c != '\0' && !IsSpace(c) && !IsControl(c), name);
  FUZZ_CHECK(name != "." && name != "..", name);
}

// The path under /proc/sys a key opens (as netcore's sysctl.cc builds it)
// stays under /proc/sys.
void CheckSysctlKey(absl::string_view key) {
  if (!diyc::netcore::ValidateSysctlKey(key).ok()) return;
  FUZZ_CHECK(!key.empty() && key.size() <= 255, key);
  std::string rel(key);
  if (rel.find('/') == std::string::npos) {
    for (char& c : rel) {
      if (c == '.') c = '/';
    }
  }
  for (absl::string_view part : absl::StrSplit(rel, '/')) {
    FUZZ_CHECK(!part.empty() && part != "." && part != "..", key);
    for (char c : part) FUZZ_CHECK(IsNameChar(c), key);
  }
}

void CheckMac(absl::string_view mac) {
  if (!diyc::netcore::ValidateMac(mac).ok()) return;
  FUZZ_CHECK(mac.size() == 17, mac);
  for (size_t i = 0; i < mac.size(); ++i) {
    const char c = mac[i];
    if (i % 3 == 2) {
      FUZZ_CHECK(c == ':', mac);
    } else {
      FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'), mac);
    }
  }
}

void CheckObjectName(absl::string_view name) {
  const bool accepted = diyc::server::ValidateObjectName("network", name).ok();
  FUZZ_CHECK(accepted == MatchesObjectName(name), name);
  // Images follow the same rule.
  FUZZ_CHECK(diyc::netcore::ValidateImageName(name).ok() == accepted, name);
  if (!accepted) return;
  // The default bridge of a network is a usable interface name that nft can
  // match exactly.
  const std::string bridge = diyc::server::DefaultBridgeName(name);
  FUZZ_CHECK(diyc::netcore::ValidateIfName(bridge).ok(), name);
  for (char c : bridge) FUZZ_CHECK(IsNameChar(c), name);
  diyc::netcore::FirewallNetwork network{.name = std::string(name),
                                         .bridge = bridge,
                                         .subnet = *diyc::netcore::IpPrefix::Parse("10.88.0.0/24")};
  FUZZ_CHECK(diyc::netcore::ValidateFirewallNetwork(network).ok(), name);
}

void CheckTableName(absl::string_view table) {
  if (!diyc::netcore::ValidateNftTableName(table).ok()) return;
  FUZZ_CHECK(!table.empty() && table.size() <= 32, table);
  FUZZ_CHECK((table[0] >= 'a' && table[0] <= 'z') || (table[0] >= 'A' && table[0] <= 'Z'), table);
  for (char c : table) FUZZ_CHECK(IsAlnum(c) || c == '_', table);
}

// A Target built from the bytes: the first selects the kind, the rest is the
// value (or the pid).
void CheckTarget(absl::string_view input) {
  if (input.empty()) return;
  Target target;
  target.kind = static_cast<Target::Kind>(static_cast<unsigned char>(input[0]) % 5);
  target.value = std::string(input.substr(1));
  if (target.kind == Target::Kind::kPid) {
    uint32_t bits = 0;
    std::memcpy(&bits, input.data() + 1, std::min<size_t>(4, input.size() - 1));
    target.pid = static_cast<int>(bits);
    target.value.clear();
  }
  if (!diyc::server::ValidateTarget(target).ok()) return;
  const std::string& v = target.value;
  switch (target.kind) {
    case Target::Kind::kNone:
      FUZZ_CHECK(false, input);
      break;
    case Target::Kind::kContainer:
      FUZZ_CHECK(MatchesObjectName(v), input);
      break;
    case Target::Kind::kNetnsName:
      FUZZ_CHECK(diyc::netcore::ValidateNetnsName(v).ok(), input);
      break;
    case Target::Kind::kPid:
      FUZZ_CHECK(target.pid > 0, input);
      break;
    case Target::Kind::kNetnsPath:
      FUZZ_CHECK(!v.empty() && v[0] == '/' && v.size() <= 4096, input);
      FUZZ_CHECK(v.find('\0') == std::string::npos, input);
      for (absl::string_view part : absl::StrSplit(v, '/')) FUZZ_CHECK(part != "..", input);
      break;
  }
  FUZZ_CHECK(!target.Label().empty(), input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4200) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  CheckIfName(input);
  CheckNetnsName(input);
  CheckSysctlKey(input);
  CheckMac(input);
  CheckObjectName(input);
  CheckTableName(input);
  CheckTarget(input);
  return 0;
}
