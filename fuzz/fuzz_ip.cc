// IpAddress::Parse, IpPrefix::Parse and IpPrefix::ParseNetwork on arbitrary
// bytes, checked against glibc's inet_pton: diyc accepts exactly what
// inet_pton accepts (the whole input, no NUL), gets the same bytes, and
// ToString() round-trips.
#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "diyc/netcore/ip.h"
#include "fuzz/fuzz_check.h"

namespace {

using diyc::netcore::IpAddress;
using diyc::netcore::IpFamily;
using diyc::netcore::IpPrefix;

// inet_pton over the exact bytes: a NUL inside would end its C string early,
// so such input counts as rejected.
bool PtonAccepts(int af, const std::string& text, uint8_t* out) {
  if (text.find('\0') != std::string::npos) return false;
  return inet_pton(af, text.c_str(), out) == 1;
}

void CheckAddress(const std::string& text) {
  absl::StatusOr<IpAddress> parsed = IpAddress::Parse(text);
  uint8_t v4[4] = {}, v6[16] = {};
  const bool pton4 = PtonAccepts(AF_INET, text, v4);
  const bool pton6 = PtonAccepts(AF_INET6, text, v6);
  FUZZ_CHECK(!(pton4 && pton6), text);

  if (!parsed.ok()) {
    // Everything inet_pton takes, diyc takes.
    FUZZ_CHECK(!pton4, text);
    FUZZ_CHECK(!pton6, text);
    return;
  }
  if (parsed->is_v4()) {
    FUZZ_CHECK(pton4, text);
    FUZZ_CHECK(std::memcmp(parsed->bytes(), v4, 4) == 0, text);
    // inet_pton's IPv4 syntax has one spelling per address.
    FUZZ_CHECK(parsed->ToString() == text, text);
  } else {
    FUZZ_CHECK(parsed->family() == IpFamily::kV6, text);
    FUZZ_CHECK(pton6, text);
    FUZZ_CHECK(std::memcmp(parsed->bytes(), v6, 16) == 0, text);
  }
  const std::string shown = parsed->ToString();
  absl::StatusOr<IpAddress> again = IpAddress::Parse(shown);
  FUZZ_CHECK(again.ok(), text);
  FUZZ_CHECK(*again == *parsed, text);
  FUZZ_CHECK(again->ToString() == shown, text);
  bool zero = true;
  for (size_t i = 0; i < parsed->size(); ++i) zero = zero && parsed->bytes()[i] == 0;
  FUZZ_CHECK(parsed->IsZero() == zero, text);
  if (parsed->is_v4()) FUZZ_CHECK(IpAddress::FromV4(parsed->v4()) == *parsed, text);
}

void CheckPrefix(const std::string& text) {
  absl::StatusOr<IpPrefix> prefix = IpPrefix::Parse(text);
  absl::StatusOr<IpPrefix> network = IpPrefix::ParseNetwork(text);
  if (!prefix.ok()) {
    FUZZ_CHECK(!network.ok(), text);
    return;
  }
  const size_t slash = text.find('/');
  FUZZ_CHECK(slash != std::string::npos, text);
  FUZZ_CHECK(IpAddress::Parse(text.substr(0, slash)).ok(), text);
  FUZZ_CHECK(prefix->prefix_len() >= 0 && prefix->prefix_len() <= prefix->max_len(), text);
  // The length is plain decimal: it prints back as written.
  FUZZ_CHECK(std::to_string(prefix->prefix_len()) == text.substr(slash + 1), text);

  absl::StatusOr<IpPrefix> again = IpPrefix::Parse(prefix->ToString());
  FUZZ_CHECK(again.ok() && *again == *prefix, text);

  const IpPrefix net = prefix->Network();
  FUZZ_CHECK(net.Network() == net, text);
  FUZZ_CHECK(net.prefix_len() == prefix->prefix_len(), text);
  FUZZ_CHECK(net.Contains(prefix->address()), text);
  FUZZ_CHECK(prefix->Contains(net.address()), text);
  FUZZ_CHECK(network.ok() == (net == *prefix), text);
  if (network.ok()) FUZZ_CHECK(*network == *prefix, text);

  // Overlaps is symmetric and agrees with Contains, against a few fixed prefixes.
  static const char* const kOthers[] = {"0.0.0.0/0", "10.0.0.0/8", "10.88.0.0/24", "255.255.255.255/32",
                                        "::/0",      "fd00::/8",   "fe80::/10",    "::ffff:0.0.0.0/96"};
  for (const char* other_text : kOthers) {
    const IpPrefix other = *IpPrefix::Parse(other_text);
    const bool overlaps = net.Overlaps(other);
    FUZZ_CHECK(overlaps == other.Overlaps(net), text);
    if (other.family() != net.family()) {
      FUZZ_CHECK(!overlaps, text);
    } else {
      FUZZ_CHECK(overlaps == (other.Contains(net.address()) || net.Contains(other.address())), text);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  CheckAddress(text);
  CheckPrefix(text);
  return 0;
}
