// netlink_floor: the least kernel work that joins a network namespace to a
// bridge, as a yardstick for diycd's AttachContainer/DetachContainer.
//
// It does what an attach needs (veth pair with its peer created inside the
// namespace under its final name, host end on the bridge and up, IPv4
// address, both links and loopback up, default route) in as few requests as
// the kernel allows, on raw NETLINK_ROUTE sockets, with no library between:
//
//   host socket: 1 sendmsg carrying 2 requests (RTM_NEWLINK of the pair with
//                peer namespace, master and up; no IPv6 link-local on the
//                host end, as diycd does), 2 acks
//   namespace:   1 socket (setns there and back), 1 ioctl for eth0's index,
//                1 sendmsg carrying 4 requests (lo up, eth0 up without IPv6
//                link-local as diycd does, address, default route), 4 acks
//   detach:      1 RTM_DELLINK of the host end (the peer goes with it)
//
// bench/bench.py runs it as a coprocess and feeds it one command per line on
// stdin, so process start-up is never timed:
//
//   attach NETNS HOST_IFNAME BRIDGE_IFINDEX ADDRESS/PREFIX GATEWAY
//   detach HOST_IFNAME
//
// Each command answers one line: "ok NANOSECONDS" (the time of the kernel
// work, from opening the namespace to closing the last descriptor) or
// "err MESSAGE". Needs CAP_NET_ADMIN and CAP_SYS_ADMIN (setns). libc only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A failed step, carrying the errno text for the answer line.
class Failure : public std::runtime_error {
 public:
  Failure(const std::string& what, int err) : std::runtime_error(what + ": " + std::strerror(err)) {}
};

// Closes a descriptor on every path.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int64_t NowNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Builds netlink messages back to back in one buffer, so several requests
// leave in one sendmsg.
class Batch {
 public:
  // Starts a message; returns its sequence number.
  uint32_t Begin(uint16_t type, uint16_t flags) {
    current_ = buf_.size();
    nlmsghdr header{};
    header.nlmsg_type = type;
    header.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    header.nlmsg_seq = ++seq_;
    Append(&header, sizeof(header));
    ++count_;
    return seq_;
  }

  void Append(const void* data, size_t len) {
    const char* bytes = static_cast<const char*>(data);
    buf_.insert(buf_.end(), bytes, bytes + len);
    buf_.resize(NLMSG_ALIGN(buf_.size()), 0);
    Header()->nlmsg_len = static_cast<uint32_t>(buf_.size() - current_);
  }

  void Attr(uint16_t type, const void* data, size_t len) {
    nlattr attr{static_cast<uint16_t>(NLA_HDRLEN + len), type};
    const size_t at = buf_.size();
    buf_.resize(at + NLA_HDRLEN);
    std::memcpy(buf_.data() + at, &attr, sizeof(attr));
    Append(data, len);
  }
  void AttrU32(uint16_t type, uint32_t value) { Attr(type, &value, sizeof(value)); }
  void AttrU8(uint16_t type, uint8_t value) { Attr(type, &value, sizeof(value)); }
  void AttrString(uint16_t type, const std::string& value) { Attr(type, value.c_str(), value.size() + 1); }

  // Opens a nested attribute; End() closes it.
  size_t Nest(uint16_t type) {
    const size_t at = buf_.size();
    Attr(type, nullptr, 0);
    return at;
  }
  void End(size_t at) {
    nlattr attr{};
    std::memcpy(&attr, buf_.data() + at, sizeof(attr));
    attr.nla_len = static_cast<uint16_t>(buf_.size() - at);
    std::memcpy(buf_.data() + at, &attr, sizeof(attr));
  }

  // Sends every message in one call, then reads one ack per message.
  void Exchange(int sock, const char* what) {
    if (send(sock, buf_.data(), buf_.size(), 0) != static_cast<ssize_t>(buf_.size())) throw Failure(what, errno);
    int pending = count_;
    alignas(nlmsghdr) char reply[8192];
    while (pending > 0) {
      const ssize_t n = recv(sock, reply, sizeof(reply), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw Failure(what, errno);
      }
      int len = static_cast<int>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (err->error != 0) throw Failure(std::string(what) + " (request " + std::to_string(h->nlmsg_seq) + ")", -err->error);
        --pending;
      }
    }
  }

 private:
  nlmsghdr* Header() { return reinterpret_cast<nlmsghdr*>(buf_.data() + current_); }

  std::vector<char> buf_;
  size_t current_ = 0;
  uint32_t seq_ = 0;
  int count_ = 0;
};

int OpenRouteSocket() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw Failure("netlink socket", errno);
  return fd;
}

// A route socket created inside the namespace; the thread returns home.
int RouteSocketIn(int ns_fd, int home_fd) {
  if (setns(ns_fd, CLONE_NEWNET) != 0) throw Failure("setns into the namespace", errno);
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  const int saved = errno;
  if (setns(home_fd, CLONE_NEWNET) != 0) throw Failure("setns back home", errno);
  if (fd < 0) throw Failure("netlink socket in the namespace", saved);
  return fd;
}

void ParseCidr(const std::string& cidr, in_addr* address, uint8_t* prefix) {
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), address) != 1) {
    throw Failure("address " + cidr, EINVAL);
  }
  *prefix = static_cast<uint8_t>(std::stoi(cidr.substr(slash + 1)));
}

void AddVeth(int host_sock, const std::string& host_ifname, int bridge_index, int ns_fd) {
  Batch batch;
  batch.Begin(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  batch.Append(&ifi, sizeof(ifi));
  batch.AttrString(IFLA_IFNAME, host_ifname);
  batch.AttrU32(IFLA_MASTER, static_cast<uint32_t>(bridge_index));
  const size_t linkinfo = batch.Nest(IFLA_LINKINFO);
  batch.AttrString(IFLA_INFO_KIND, "veth");
  const size_t data = batch.Nest(IFLA_INFO_DATA);
  const size_t peer = batch.Nest(VETH_INFO_PEER);
  ifinfomsg peer_ifi{};
  peer_ifi.ifi_family = AF_UNSPEC;
  batch.Append(&peer_ifi, sizeof(peer_ifi));
  batch.AttrString(IFLA_IFNAME, "eth0");
  batch.AttrU32(IFLA_NET_NS_FD, static_cast<uint32_t>(ns_fd));
  batch.End(peer);
  batch.End(data);
  batch.End(linkinfo);

  // The kernel refuses IFLA_AF_SPEC in a create request (the link has no
  // IPv6 state yet), so "no IPv6 link-local on the host end" is a second
  // request in the same sendmsg. The peer is still down, so the host end has
  // no carrier and no link-local can appear in between.
  batch.Begin(RTM_NEWLINK, 0);
  ifinfomsg change{};
  change.ifi_family = AF_UNSPEC;
  batch.Append(&change, sizeof(change));
  batch.AttrString(IFLA_IFNAME, host_ifname);
  const size_t af_spec = batch.Nest(IFLA_AF_SPEC);
  const size_t inet6 = batch.Nest(AF_INET6);
  batch.AttrU8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
  batch.End(inet6);
  batch.End(af_spec);
  batch.Exchange(host_sock, "create veth");
}

// Brings a link up. no_ipv6: in the same request, no IPv6 link-local (as
// diycd does for a network without IPv6), so the new port does not flood DAD
// and router solicitations to every other port of the bridge.
void SetUp(Batch& batch, int index, bool no_ipv6) {
  batch.Begin(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  batch.Append(&ifi, sizeof(ifi));
  if (no_ipv6) {
    const size_t af_spec = batch.Nest(IFLA_AF_SPEC);
    const size_t inet6 = batch.Nest(AF_INET6);
    batch.AttrU8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
    batch.End(inet6);
    batch.End(af_spec);
  }
}

void ConfigureInside(int sock, const std::string& cidr, const std::string& gateway) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
  // A netlink socket answers SIOCGIFINDEX for its own namespace.
  if (ioctl(sock, SIOCGIFINDEX, &ifr) != 0) throw Failure("index of eth0", errno);
  const int eth0 = ifr.ifr_ifindex;
  in_addr address{}, via{};
  uint8_t prefix = 0;
  ParseCidr(cidr, &address, &prefix);
  if (inet_pton(AF_INET, gateway.c_str(), &via) != 1) throw Failure("gateway " + gateway, EINVAL);

  Batch batch;
  SetUp(batch, 1, false);  // loopback is always ifindex 1 in its namespace
  SetUp(batch, eth0, true);

  batch.Begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = prefix;
  ifa.ifa_index = static_cast<uint32_t>(eth0);
  batch.Append(&ifa, sizeof(ifa));
  batch.Attr(IFA_LOCAL, &address, sizeof(address));
  batch.Attr(IFA_ADDRESS, &address, sizeof(address));

  batch.Begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg rt{};
  rt.rtm_family = AF_INET;
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;
  rt.rtm_scope = RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  batch.Append(&rt, sizeof(rt));
  batch.Attr(RTA_GATEWAY, &via, sizeof(via));
  batch.AttrU32(RTA_OIF, static_cast<uint32_t>(eth0));
  batch.Exchange(sock, "configure the namespace");
}

int64_t Attach(int host_sock, int home_fd, const std::string& netns, const std::string& host_ifname,
               int bridge_index, const std::string& cidr, const std::string& gateway) {
  const int64_t start = NowNanos();
  {
    const std::string path = "/run/netns/" + netns;
    Fd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.get() < 0) throw Failure("open " + path, errno);
    AddVeth(host_sock, host_ifname, bridge_index, ns.get());
    Fd inside(RouteSocketIn(ns.get(), home_fd));
    ConfigureInside(inside.get(), cidr, gateway);
  }
  return NowNanos() - start;
}

int64_t Detach(int host_sock, const std::string& host_ifname) {
  const int64_t start = NowNanos();
  Batch batch;
  batch.Begin(RTM_DELLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  batch.Append(&ifi, sizeof(ifi));
  batch.AttrString(IFLA_IFNAME, host_ifname);
  batch.Exchange(host_sock, "delete veth");
  return NowNanos() - start;
}

// Runs one command line; returns the answer line.
std::string Run(const std::string& line, int host_sock, int home_fd) {
  std::istringstream in(line);
  std::string verb;
  in >> verb;
  if (verb == "attach") {
    std::string netns, host_ifname, cidr, gateway;
    int bridge_index = 0;
    if (!(in >> netns >> host_ifname >> bridge_index >> cidr >> gateway)) return "err usage: attach NETNS HOST_IFNAME BRIDGE_INDEX CIDR GATEWAY";
    return "ok " + std::to_string(Attach(host_sock, home_fd, netns, host_ifname, bridge_index, cidr, gateway));
  }
  if (verb == "detach") {
    std::string host_ifname;
    if (!(in >> host_ifname)) return "err usage: detach HOST_IFNAME";
    return "ok " + std::to_string(Detach(host_sock, host_ifname));
  }
  return "err unknown command " + verb;
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  try {
    Fd home(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (home.get() < 0) throw Failure("open /proc/self/ns/net", errno);
    Fd host(OpenRouteSocket());
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      if (line == "quit") break;
      std::string answer;
      try {
        answer = Run(line, host.get(), home.get());
      } catch (const std::exception& e) {
        answer = std::string("err ") + e.what();
      }
      std::cout << answer << '\n' << std::flush;
    }
  } catch (const std::exception& e) {
    std::cerr << "netlink_floor: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
