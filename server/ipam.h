// Address allocation inside one network's IPv4 subnet.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/netcore/ip.h"

namespace diyc::server {

// Hands out host addresses of a subnet. The network and broadcast addresses
// and the gateway are never handed out. Allocation scans from where the last
// one stopped, so it is O(1) amortised and recently freed addresses are not
// reused at once (a stale ARP entry elsewhere would point at the old MAC).
// Not thread-safe: the owner serialises.
class Ipam {
 public:
  // subnet: an IPv4 network of prefix length 8..30; gateway inside it.
  // range: the part of the subnet Allocate() hands out (a node's share of a
  // network that spans nodes); default the whole subnet.
  static absl::StatusOr<Ipam> Create(const netcore::IpPrefix& subnet, const netcore::IpAddress& gateway,
                                     const std::optional<netcore::IpPrefix>& range = std::nullopt);

  // RESOURCE_EXHAUSTED when the range is full.
  absl::StatusOr<netcore::IpAddress> Allocate();
  // A specific address anywhere in the subnet, range or not (the caller
  // chose it): INVALID_ARGUMENT outside the subnet or reserved,
  // ALREADY_EXISTS when taken.
  absl::Status Reserve(const netcore::IpAddress& address);
  void Release(const netcore::IpAddress& address);

  // Host offset of an address inside the subnet (gateway .1 is 1).
  uint32_t Offset(const netcore::IpAddress& address) const { return address.v4() - base_; }
  size_t used() const { return used_; }
  // Addresses Allocate() can hand out at all.
  size_t capacity() const { return capacity_; }

 private:
  Ipam(uint32_t base, uint32_t size, uint32_t gateway_offset, uint32_t first, uint32_t last);
  bool InRange(uint32_t offset) const { return offset >= first_ && offset <= last_; }
  absl::Status CheckAssignable(const netcore::IpAddress& address) const;

  uint32_t base_;
  uint32_t size_;
  uint32_t gateway_offset_;
  uint32_t first_;  // offsets Allocate() may return, inclusive
  uint32_t last_;
  std::vector<bool> taken_;
  uint32_t cursor_;
  size_t used_ = 0;
  size_t capacity_ = 0;
  size_t free_in_range_ = 0;
};

// Validates an IPv4 subnet for a bridge network: network address exact,
// prefix 8..30, and not a special-purpose range (0/8, 127/8, 169.254/16,
// 224/4, 240/4).
absl::Status ValidateSubnet(const netcore::IpPrefix& subnet);
// Validates an IPv6 subnet: network address exact, prefix 64..120, not
// link-local, loopback or multicast.
absl::Status ValidateSubnet6(const netcore::IpPrefix& subnet);
// The address at host offset `offset` of an IPv4 or IPv6 subnet.
netcore::IpAddress AddressAt(const netcore::IpPrefix& subnet, uint32_t offset);

}  // namespace diyc::server
