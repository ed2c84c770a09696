#include "ipam.h"

#include <algorithm>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/status_macros.h"

namespace diyc::server {

using netcore::IpAddress;
using netcore::IpPrefix;

absl::Status ValidateSubnet(const IpPrefix& subnet) {
  const std::string text = subnet.ToString();
  if (!subnet.address().is_v4()) return absl::InvalidArgumentError(absl::StrCat("subnet ", text, ": must be IPv4"));
  if (!(subnet.Network() == subnet)) {
    return absl::InvalidArgumentError(
        absl::StrCat("subnet ", text, ": host bits set (did you mean ", subnet.Network().ToString(), "?)"));
  }
  if (subnet.prefix_len() < 8 || subnet.prefix_len() > 30) {
    return absl::InvalidArgumentError(absl::StrCat("subnet ", text, ": prefix length must be 8..30"));
  }
  for (const char* reserved : {"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"}) {
    if (subnet.Overlaps(*IpPrefix::Parse(reserved))) {
      return absl::InvalidArgumentError(absl::StrCat("subnet ", text, ": overlaps special-purpose range ", reserved));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSubnet6(const IpPrefix& subnet) {
  const std::string text = subnet.ToString();
  if (subnet.address().is_v4()) return absl::InvalidArgumentError(absl::StrCat("subnet6 ", text, ": must be IPv6"));
  if (!(subnet.Network() == subnet)) {
    return absl::InvalidArgumentError(absl::StrCat("subnet6 ", text, ": host bits set"));
  }
  if (subnet.prefix_len() < 64 || subnet.prefix_len() > 120) {
    return absl::InvalidArgumentError(absl::StrCat("subnet6 ", text, ": prefix length must be 64..120"));
  }
  for (const char* reserved : {"fe80::/10", "::/8", "ff00::/8"}) {
    if (subnet.Overlaps(*IpPrefix::Parse(reserved))) {
      return absl::InvalidArgumentError(absl::StrCat("subnet6 ", text, ": overlaps special-purpose range ", reserved));
    }
  }
  return absl::OkStatus();
}

IpAddress AddressAt(const IpPrefix& subnet, uint32_t offset) {
  IpPrefix network = subnet.Network();
  if (network.address().is_v4()) return IpAddress::FromV4(network.address().v4() + offset);
  uint8_t bytes[16];
  std::memcpy(bytes, network.address().bytes(), 16);
  // Add offset to the low 32 bits (subnets are at most /120... /64 here).
  uint32_t low = (uint32_t{bytes[12]} << 24) | (uint32_t{bytes[13]} << 16) | (uint32_t{bytes[14]} << 8) | bytes[15];
  low += offset;
  bytes[12] = low >> 24;
  bytes[13] = low >> 16;
  bytes[14] = low >> 8;
  bytes[15] = low;
  return IpAddress::FromBytes(netcore::IpFamily::kV6, bytes);
}

absl::StatusOr<Ipam> Ipam::Create(const IpPrefix& subnet, const IpAddress& gateway,
                                  const std::optional<IpPrefix>& range) {
  DIYC_RETURN_IF_ERROR(ValidateSubnet(subnet));
  const uint32_t base = subnet.address().v4();
  const uint32_t size = uint32_t{1} << (32 - subnet.prefix_len());
  if (!subnet.Contains(gateway)) {
    return absl::InvalidArgumentError(absl::StrCat("gateway ", gateway.ToString(), " is outside subnet ", subnet.ToString()));
  }
  const uint32_t offset = gateway.v4() - base;
  if (offset == 0 || offset == size - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("gateway ", gateway.ToString(), " is the network or broadcast address of ", subnet.ToString()));
  }
  uint32_t first = 1, last = size - 2;
  if (range) {
    if (!range->address().is_v4() || !(range->Network() == *range) || range->prefix_len() < subnet.prefix_len() ||
        !subnet.Contains(range->address())) {
      return absl::InvalidArgumentError(
          absl::StrCat("ip_range ", range->ToString(), " is not a network inside subnet ", subnet.ToString()));
    }
    const uint32_t range_first = range->address().v4() - base;
    const uint32_t range_size = uint32_t{1} << (32 - range->prefix_len());
    first = std::max<uint32_t>(first, range_first);
    last = std::min<uint32_t>(last, range_first + range_size - 1);
    const uint32_t usable = last >= first ? last - first + 1 - (offset >= first && offset <= last ? 1 : 0) : 0;
    if (usable == 0) {
      return absl::InvalidArgumentError(absl::StrCat("ip_range ", range->ToString(), " holds no assignable address"));
    }
  }
  return Ipam(base, size, offset, first, last);
}

Ipam::Ipam(uint32_t base, uint32_t size, uint32_t gateway_offset, uint32_t first, uint32_t last)
    : base_(base), size_(size), gateway_offset_(gateway_offset), first_(first), last_(last), taken_(size, false),
      cursor_(first) {
  taken_[0] = taken_[size - 1] = taken_[gateway_offset] = true;
  // first >= 1 and last <= size - 2: of the reserved offsets only the
  // gateway can fall inside the range.
  capacity_ = last - first + 1 - (InRange(gateway_offset) ? 1 : 0);
  free_in_range_ = capacity_;
}

absl::Status Ipam::CheckAssignable(const IpAddress& address) const {
  if (!address.is_v4() || address.v4() - base_ >= size_ || address.v4() < base_) {
    return absl::InvalidArgumentError(absl::StrCat("address ", address.ToString(), " is outside the subnet"));
  }
  const uint32_t offset = address.v4() - base_;
  if (offset == 0) return absl::InvalidArgumentError(absl::StrCat(address.ToString(), " is the network address"));
  if (offset == size_ - 1) return absl::InvalidArgumentError(absl::StrCat(address.ToString(), " is the broadcast address"));
  if (offset == gateway_offset_) return absl::InvalidArgumentError(absl::StrCat(address.ToString(), " is the gateway"));
  return absl::OkStatus();
}

absl::StatusOr<IpAddress> Ipam::Allocate() {
  if (free_in_range_ == 0) {
    return absl::ResourceExhaustedError(absl::StrCat("no free address left (", capacity(), " in use)"));
  }
  for (uint32_t scanned = first_; scanned <= last_; ++scanned) {
    uint32_t offset = cursor_;
    cursor_ = cursor_ + 1 > last_ ? first_ : cursor_ + 1;
    if (!taken_[offset]) {
      taken_[offset] = true;
      ++used_;
      --free_in_range_;
      return IpAddress::FromV4(base_ + offset);
    }
  }
  return absl::ResourceExhaustedError("no free address left");
}

absl::Status Ipam::Reserve(const IpAddress& address) {
  DIYC_RETURN_IF_ERROR(CheckAssignable(address));
  const uint32_t offset = address.v4() - base_;
  if (taken_[offset]) return absl::AlreadyExistsError(absl::StrCat("address ", address.ToString(), " is already in use"));
  taken_[offset] = true;
  ++used_;
  if (InRange(offset)) --free_in_range_;
  return absl::OkStatus();
}

void Ipam::Release(const IpAddress& address) {
  if (!CheckAssignable(address).ok()) return;
  const uint32_t offset = address.v4() - base_;
  if (taken_[offset]) {
    taken_[offset] = false;
    --used_;
    if (InRange(offset)) ++free_in_range_;
  }
}

}  // namespace diyc::server
