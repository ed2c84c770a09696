// Strict IPv4/IPv6 address and prefix values.
//
// Parsing follows inet_pton: "10.1", "010.0.0.1", "0x0a.0.0.1" and anything
// with whitespace are rejected (inet_aton would accept them and silently
// mean another address).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace diyc::netcore {

enum class IpFamily : uint8_t { kV4 = 4, kV6 = 6 };

// AF_INET / AF_INET6 for a family.
int ToAf(IpFamily family);

class IpAddress {
 public:
  IpAddress() = default;

  static absl::StatusOr<IpAddress> Parse(absl::string_view text);
  // From raw network-order bytes: 4 for IPv4, 16 for IPv6.
  static IpAddress FromBytes(IpFamily family, const uint8_t* bytes);
  static IpAddress FromV4(uint32_t host_order);

  IpFamily family() const { return family_; }
  bool is_v4() const { return family_ == IpFamily::kV4; }
  // 4 or 16.
  size_t size() const { return is_v4() ? 4 : 16; }
  const uint8_t* bytes() const { return bytes_.data(); }
  // The address as a host-order integer; IPv4 only.
  uint32_t v4() const;
  bool IsZero() const;

  std::string ToString() const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }
  friend bool operator!=(const IpAddress& a, const IpAddress& b) { return !(a == b); }
  friend bool operator<(const IpAddress& a, const IpAddress& b) {
    if (a.family_ != b.family_) return a.family_ < b.family_;
    return a.bytes_ < b.bytes_;
  }

 private:
  IpFamily family_ = IpFamily::kV4;
  std::array<uint8_t, 16> bytes_{};
};

// An address with a prefix length, as in "10.0.0.2/24". The address keeps its
// host bits (an interface address); Network() clears them.
class IpPrefix {
 public:
  IpPrefix() = default;
  IpPrefix(IpAddress address, int prefix_len) : address_(address), prefix_len_(prefix_len) {}

  // "ADDR/LEN" with LEN a decimal 0..32 (IPv4) or 0..128 (IPv6).
  static absl::StatusOr<IpPrefix> Parse(absl::string_view text);
  // Like Parse, but the host bits must be zero ("10.0.0.5/24" is refused).
  static absl::StatusOr<IpPrefix> ParseNetwork(absl::string_view text);

  const IpAddress& address() const { return address_; }
  int prefix_len() const { return prefix_len_; }
  IpFamily family() const { return address_.family(); }
  int max_len() const { return address_.is_v4() ? 32 : 128; }

  IpPrefix Network() const;
  bool Contains(const IpAddress& address) const;
  bool Overlaps(const IpPrefix& other) const;
  std::string ToString() const;

  friend bool operator==(const IpPrefix& a, const IpPrefix& b) {
    return a.address_ == b.address_ && a.prefix_len_ == b.prefix_len_;
  }

 private:
  IpAddress address_;
  int prefix_len_ = 0;
};

}  // namespace diyc::netcore
