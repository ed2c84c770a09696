#include "diyc/netcore/ping.h"

#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"

namespace diyc::netcore {
namespace {

using Clock = std::chrono::steady_clock;

struct EchoHeader {
  uint8_t type;
  uint8_t code;
  uint16_t checksum;
  uint16_t id;
  uint16_t seq;
};

uint16_t InternetChecksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (len & 1) sum += data[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

absl::StatusOr<UniqueFd> OpenIcmpSocket(IpFamily family) {
  int fd = family == IpFamily::kV4 ? socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP)
                                   : socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return ErrnoError(errno, "open ICMP socket");
  UniqueFd sock(fd);
  if (family == IpFamily::kV6) {
    // Only echo replies; the kernel fills in the ICMPv6 checksum itself.
    icmp6_filter filter;
    ICMP6_FILTER_SETBLOCKALL(&filter);
    ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
    setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter));
  }
  return sock;
}

// Returns the ICMP header of an echo reply to (id, seq) from dst, or nullptr.
const EchoHeader* MatchReply(const uint8_t* buf, ssize_t len, const sockaddr_storage& from, const IpAddress& dst,
                             uint16_t id, uint16_t seq) {
  size_t offset = 0;
  if (dst.is_v4()) {
    if (len < static_cast<ssize_t>(sizeof(iphdr))) return nullptr;
    offset = reinterpret_cast<const iphdr*>(buf)->ihl * 4u;
    const auto& sin = reinterpret_cast<const sockaddr_in&>(from);
    if (std::memcmp(&sin.sin_addr, dst.bytes(), 4) != 0) return nullptr;
  } else {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(from);
    if (std::memcmp(&sin6.sin6_addr, dst.bytes(), 16) != 0) return nullptr;
  }
  if (len < static_cast<ssize_t>(offset + sizeof(EchoHeader))) return nullptr;
  const auto* echo = reinterpret_cast<const EchoHeader*>(buf + offset);
  const uint8_t reply_type = dst.is_v4() ? ICMP_ECHOREPLY : ICMP6_ECHO_REPLY;
  if (echo->type != reply_type || echo->id != htons(id) || echo->seq != htons(seq)) return nullptr;
  return echo;
}

}  // namespace

absl::StatusOr<PingResult> Ping(const Netns* ns, const IpAddress& dst, const PingOptions& options) {
  if (options.count < 1 || options.count > 10000) {
    return absl::InvalidArgumentError(absl::StrCat("ping count ", options.count, " out of range 1..10000"));
  }
  if (options.timeout <= absl::ZeroDuration() || options.timeout > absl::Seconds(60)) {
    return absl::InvalidArgumentError("ping timeout must be in (0, 60] seconds");
  }
  // The socket is made inside ns and stays bound to it; sending happens here.
  auto open = [&] { return OpenIcmpSocket(dst.family()); };
  absl::StatusOr<UniqueFd> opened = ns == nullptr ? open() : RunInNetnsFor<UniqueFd>(*ns, open);
  const std::string what = absl::StrCat("ping ", dst.ToString(), ns ? absl::StrCat(" from netns ", Quote(ns->label())) : "");
  if (!opened.ok()) return Annotate(opened.status(), what);
  UniqueFd sock = *std::move(opened);

  sockaddr_storage to{};
  socklen_t to_len;
  if (dst.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&to);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, dst.bytes(), 4);
    to_len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&to);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, dst.bytes(), 16);
    to_len = sizeof(sockaddr_in6);
  }

  // Raw sockets see every echo reply in the namespace: a random id keeps
  // concurrent pings apart.
  uint16_t id = 0;
  if (getrandom(&id, sizeof(id), 0) != sizeof(id)) id = static_cast<uint16_t>(Clock::now().time_since_epoch().count());

  PingResult result;
  for (int i = 0; i < options.count; ++i) {
    const uint16_t seq = static_cast<uint16_t>(i + 1);
    uint8_t packet[64] = {};
    auto* echo = reinterpret_cast<EchoHeader*>(packet);
    echo->type = dst.is_v4() ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
    echo->id = htons(id);
    echo->seq = htons(seq);
    std::memcpy(packet + sizeof(EchoHeader), "diyc-ping", 9);
    if (dst.is_v4()) echo->checksum = InternetChecksum(packet, sizeof(packet));

    const Clock::time_point sent_at = Clock::now();
    if (sendto(sock.get(), packet, sizeof(packet), 0, reinterpret_cast<sockaddr*>(&to), to_len) < 0) {
      // No route or link down: this request is lost, like ping reports it.
      if (errno != ENETUNREACH && errno != EHOSTUNREACH && errno != ENETDOWN && errno != EADDRNOTAVAIL) {
        return ErrnoError(errno, what);
      }
      ++result.sent;
      continue;
    }
    ++result.sent;

    const Clock::time_point deadline = sent_at + absl::ToChronoNanoseconds(options.timeout);
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd pfd{sock.get(), POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      uint8_t buf[1500];
      sockaddr_storage from{};
      socklen_t from_len = sizeof(from);
      ssize_t n = recvfrom(sock.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return ErrnoError(errno, what);
      }
      if (MatchReply(buf, n, from, dst, id, seq) != nullptr) {
        ++result.received;
        result.rtts_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent_at).count());
        break;
      }
    }
    if (i + 1 < options.count && options.interval > absl::ZeroDuration()) {
      std::this_thread::sleep_until(sent_at + absl::ToChronoNanoseconds(options.interval));
    }
  }
  return result;
}

}  // namespace diyc::netcore
