#include "diyc/netcore/ip.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::netcore {
namespace {

// Printable ASCII without spaces: inet_pton works on a C string, so an
// embedded NUL ("10.0.0.1\0junk") would otherwise pass as "10.0.0.1".
bool IsCleanToken(absl::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c <= ' ' || c >= 0x7f) return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view what, absl::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat("invalid ", what, " ", Quote(text)));
}

// A decimal 0..max without sign, leading zeros or junk.
bool ParsePrefixLen(absl::string_view text, int max, int* out) {
  if (text.empty() || text.size() > 3) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > max) return false;
  *out = value;
  return true;
}

}  // namespace

int ToAf(IpFamily family) { return family == IpFamily::kV4 ? AF_INET : AF_INET6; }

absl::StatusOr<IpAddress> IpAddress::Parse(absl::string_view text) {
  if (!IsCleanToken(text) || text.size() > INET6_ADDRSTRLEN) return Invalid("IP address", text);
  std::string copy(text);
  IpAddress address;
  if (copy.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, copy.c_str(), address.bytes_.data()) != 1) {
      return Invalid("IP address", text);
    }
    address.family_ = IpFamily::kV4;
  } else {
    if (inet_pton(AF_INET6, copy.c_str(), address.bytes_.data()) != 1) {
      return Invalid("IP address", text);
    }
    address.family_ = IpFamily::kV6;
  }
  return address;
}

IpAddress IpAddress::FromBytes(IpFamily family, const uint8_t* bytes) {
  IpAddress address;
  address.family_ = family;
  std::memcpy(address.bytes_.data(), bytes, family == IpFamily::kV4 ? 4 : 16);
  return address;
}

IpAddress IpAddress::FromV4(uint32_t host_order) {
  uint32_t net = htonl(host_order);
  return FromBytes(IpFamily::kV4, reinterpret_cast<const uint8_t*>(&net));
}

uint32_t IpAddress::v4() const {
  uint32_t net;
  std::memcpy(&net, bytes_.data(), 4);
  return ntohl(net);
}

bool IpAddress::IsZero() const {
  for (size_t i = 0; i < size(); ++i) {
    if (bytes_[i] != 0) return false;
  }
  return true;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ToAf(family_), bytes_.data(), buf, sizeof(buf));
  return buf;
}

absl::StatusOr<IpPrefix> IpPrefix::Parse(absl::string_view text) {
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return Invalid("CIDR (want ADDRESS/LENGTH)", text);
  absl::StatusOr<IpAddress> address = IpAddress::Parse(text.substr(0, slash));
  if (!address.ok()) return Invalid("CIDR", text);
  int len = 0;
  if (!ParsePrefixLen(text.substr(slash + 1), address->is_v4() ? 32 : 128, &len)) {
    return Invalid("CIDR prefix length", text);
  }
  return IpPrefix(*address, len);
}

absl::StatusOr<IpPrefix> IpPrefix::ParseNetwork(absl::string_view text) {
  DIYC_ASSIGN_OR_RETURN(IpPrefix prefix, Parse(text));
  if (!(prefix.Network() == prefix)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid subnet ", Quote(text), ": host bits set (did you mean ",
                                                   prefix.Network().ToString(), "?)"));
  }
  return prefix;
}

IpPrefix IpPrefix::Network() const {
  uint8_t bytes[16];
  std::memcpy(bytes, address_.bytes(), address_.size());
  for (size_t i = 0; i < address_.size(); ++i) {
    int bits_here = prefix_len_ - static_cast<int>(i) * 8;
    if (bits_here >= 8) continue;
    bytes[i] &= bits_here <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits_here));
  }
  return IpPrefix(IpAddress::FromBytes(address_.family(), bytes), prefix_len_);
}

bool IpPrefix::Contains(const IpAddress& address) const {
  if (address.family() != family()) return false;
  return IpPrefix(address, prefix_len_).Network().address() == Network().address();
}

bool IpPrefix::Overlaps(const IpPrefix& other) const {
  if (other.family() != family()) return false;
  return prefix_len_ <= other.prefix_len_ ? Contains(other.address_) : other.Contains(address_);
}

std::string IpPrefix::ToString() const { return absl::StrCat(address_.ToString(), "/", prefix_len_); }

}  // namespace diyc::netcore
