// diyc._diyc.Socket: a route-netlink socket in one namespace with the link,
// address and route verbs. The GIL is released around every kernel call and
// a mutex serialises use of the socket, which libnl does not make thread-safe.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <optional>

#include "diyc/netcore/addr.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/link.h"
#include "diyc/netcore/nl_socket.h"
#include "diyc/netcore/route.h"
#include "status_py.h"

namespace py = pybind11;
using namespace diyc::netcore;

namespace diyc::bindings {
namespace {

class Socket {
 public:
  explicit Socket(const Netns* ns) : sock_(ValueOrThrow(ns ? NlSocket::OpenIn(*ns) : NlSocket::Open())) {}

  template <typename Fn>
  auto With(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sock_) throw StatusError(absl::FailedPreconditionError("socket is closed"));
    return fn(*sock_);
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    sock_.reset();
  }

 private:
  std::mutex mu_;
  std::optional<NlSocket> sock_;
};

std::optional<IpAddress> OptionalIp(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  return ValueOrThrow(IpAddress::Parse(*text));
}

// "default" (with the family taken from the gateway, else IPv4) or a CIDR.
RouteSpec ToRouteSpec(const std::string& dst, const std::optional<std::string>& via, int oif) {
  RouteSpec spec;
  spec.gateway = OptionalIp(via);
  spec.oif = oif;
  if (dst == "default") {
    spec.dst = DefaultRoute(spec.gateway ? spec.gateway->family() : IpFamily::kV4);
  } else {
    spec.dst = ValueOrThrow(IpPrefix::Parse(dst));
  }
  return spec;
}

IpFamily ToFamily(int family) {
  if (family == 4) return IpFamily::kV4;
  if (family == 6) return IpFamily::kV6;
  throw StatusError(absl::InvalidArgumentError("family must be 4 or 6"));
}

py::tuple AddrTuple(const AddrInfo& a) {
  return py::make_tuple(a.ifindex, a.prefix.address().ToString(), a.prefix.prefix_len(),
                        static_cast<int>(a.prefix.family()));
}

}  // namespace

void InitSocket(pybind11::module_& m) {
  const auto release = pybind11::call_guard<pybind11::gil_scoped_release>();

  pybind11::class_<LinkInfo>(m, "LinkInfo")
      .def_readonly("index", &LinkInfo::index)
      .def_readonly("name", &LinkInfo::name)
      .def_readonly("kind", &LinkInfo::kind)
      .def_readonly("mtu", &LinkInfo::mtu)
      .def_readonly("mac", &LinkInfo::mac)
      .def_readonly("up", &LinkInfo::up)
      .def_readonly("master_index", &LinkInfo::master_index)
      .def_readonly("alias", &LinkInfo::alias);

  pybind11::class_<Socket>(m, "Socket")
      .def(pybind11::init<const Netns*>(), pybind11::arg("netns").none(true), release)
      .def("close", &Socket::Close, release)
      .def(
          "bridge_add",
          [](Socket& self, const std::string& name, uint32_t mtu, bool up) {
            return self.With([&](NlSocket& s) { return ValueOrThrow(CreateBridge(s, {.name = name, .mtu = mtu, .up = up})); });
          },
          py::arg("name"), py::arg("mtu") = 0, py::arg("up") = true, release)
      .def(
          "veth_add",
          [](Socket& self, const std::string& name, const std::string& peer, const Netns* peer_netns, uint32_t mtu,
             int master_index, bool up, const std::string& peer_mac, bool no_ipv6) {
            VethOptions options{.name = name, .peer_name = peer, .peer_netns = peer_netns, .mtu = mtu,
                                .master_index = master_index, .up = up, .peer_mac = peer_mac, .no_ipv6 = no_ipv6};
            return self.With([&](NlSocket& s) { return ValueOrThrow(CreateVeth(s, options)); });
          },
          py::arg("name"), py::arg("peer"), py::arg("peer_netns").none(true), py::arg("mtu") = 0,
          py::arg("master_index") = 0, py::arg("up") = false, py::arg("peer_mac") = "", py::arg("no_ipv6") = false,
          release)
      .def(
          "link_change",
          [](Socket& self, const LinkId& id, std::optional<int> master_index, std::optional<bool> up,
             std::optional<uint32_t> mtu, std::optional<std::string> mac, std::optional<std::string> name,
             std::optional<std::string> alias) {
            LinkChange change{.master_index = master_index, .up = up, .mtu = mtu, .mac = mac, .name = name,
                              .alias = alias};
            self.With([&](NlSocket& s) { ThrowIfError(ChangeLink(s, id, change)); return 0; });
          },
          py::arg("id"), py::arg("master_index") = py::none(), py::arg("up") = py::none(),
          py::arg("mtu") = py::none(), py::arg("mac") = py::none(), py::arg("name") = py::none(),
          py::arg("alias") = py::none(), release)
      .def(
          "link_del",
          [](Socket& self, const LinkId& id) {
            self.With([&](NlSocket& s) { ThrowIfError(DeleteLink(s, id)); return 0; });
          },
          release)
      .def(
          "get_link",
          [](Socket& self, const LinkId& id) { return self.With([&](NlSocket& s) { return ValueOrThrow(GetLink(s, id)); }); },
          release)
      .def(
          "find_link",
          [](Socket& self, const LinkId& id) { return self.With([&](NlSocket& s) { return ValueOrThrow(FindLink(s, id)); }); },
          release)
      .def("links", [](Socket& self) { return self.With([](NlSocket& s) { return ValueOrThrow(ListLinks(s)); }); },
           release)
      .def("lo_up", [](Socket& self) { self.With([](NlSocket& s) { ThrowIfError(BringLoopbackUp(s)); return 0; }); },
           release)
      .def(
          "addr_add",
          [](Socket& self, int ifindex, const std::string& cidr, bool nodad) {
            IpPrefix prefix = ValueOrThrow(IpPrefix::Parse(cidr));
            self.With([&](NlSocket& s) { ThrowIfError(AddAddress(s, ifindex, prefix, {.no_dad = nodad})); return 0; });
          },
          py::arg("ifindex"), py::arg("cidr"), py::arg("nodad") = false, release)
      .def(
          "addr_del",
          [](Socket& self, int ifindex, const std::string& cidr) {
            IpPrefix prefix = ValueOrThrow(IpPrefix::Parse(cidr));
            self.With([&](NlSocket& s) { ThrowIfError(DeleteAddress(s, ifindex, prefix)); return 0; });
          },
          release)
      .def(
          "addrs",
          [](Socket& self, std::optional<int> ifindex, std::optional<int> family) {
            std::optional<IpFamily> fam;
            if (family) fam = ToFamily(*family);
            std::vector<AddrInfo> addrs =
                self.With([&](NlSocket& s) { return ValueOrThrow(ListAddresses(s, ifindex, fam)); });
            py::gil_scoped_acquire gil;
            py::list out;
            for (const AddrInfo& a : addrs) out.append(AddrTuple(a));
            return out;
          },
          py::arg("ifindex") = py::none(), py::arg("family") = py::none(), release)
      .def(
          "route_add",
          [](Socket& self, const std::string& dst, std::optional<std::string> via, int oif) {
            RouteSpec spec = ToRouteSpec(dst, via, oif);
            self.With([&](NlSocket& s) { ThrowIfError(AddRoute(s, spec)); return 0; });
          },
          py::arg("dst"), py::arg("via") = py::none(), py::arg("oif") = 0, release)
      .def(
          "route_del",
          [](Socket& self, const std::string& dst, std::optional<std::string> via, int oif) {
            RouteSpec spec = ToRouteSpec(dst, via, oif);
            self.With([&](NlSocket& s) { ThrowIfError(DeleteRoute(s, spec)); return 0; });
          },
          py::arg("dst"), py::arg("via") = py::none(), py::arg("oif") = 0, release)
      .def(
          "routes",
          [](Socket& self, int family) {
            IpFamily fam = ToFamily(family);
            std::vector<RouteInfo> routes = self.With([&](NlSocket& s) { return ValueOrThrow(ListRoutes(s, fam)); });
            py::gil_scoped_acquire gil;
            py::list out;
            for (const RouteInfo& r : routes) {
              py::object gateway = r.gateway ? py::object(py::str(r.gateway->ToString())) : py::object(py::none());
              out.append(py::make_tuple(r.dst.prefix_len() == 0 ? std::string("default") : r.dst.ToString(), gateway,
                                        r.oif, family));
            }
            return out;
          },
          py::arg("family") = 4, release);
}

}  // namespace diyc::bindings
