// The diyc._diyc extension: the netcore library as Python sees it. The typed,
// documented API is the pure-Python diyc package around it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>

#include "absl/time/time.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/ping.h"
#include "diyc/netcore/sysctl.h"
#include "diyc/netcore/validate.h"
#include "status_py.h"

namespace py = pybind11;
using namespace diyc::netcore;

namespace diyc::bindings {

void RegisterStatusTranslator(pybind11::module_& m) {
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      const absl::Status& status = e.status();
      pybind11::object from_status = pybind11::module_::import("diyc.errors").attr("_from_status");
      std::optional<int> error_number = StatusErrno(status);
      pybind11::object err_obj = error_number ? pybind11::object(pybind11::int_(*error_number)) : pybind11::none();
      pybind11::object exc = from_status(absl::StatusCodeToString(status.code()), std::string(status.message()), err_obj);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
  });
}

}  // namespace diyc::bindings

namespace {

std::tuple<std::string, int, int> ParseCidr(const std::string& text) {
  IpPrefix prefix = diyc::bindings::ValueOrThrow(IpPrefix::Parse(text));
  return {prefix.address().ToString(), prefix.prefix_len(), static_cast<int>(prefix.family())};
}

std::tuple<std::string, int> ParseIp(const std::string& text) {
  IpAddress address = diyc::bindings::ValueOrThrow(IpAddress::Parse(text));
  return {address.ToString(), static_cast<int>(address.family())};
}

}  // namespace

PYBIND11_MODULE(_diyc, m) {
  m.doc() = "diyc network core (use the diyc package, not this module)";
  diyc::bindings::RegisterStatusTranslator(m);
  diyc::bindings::InitNetns(m);
  diyc::bindings::InitSocket(m);

  m.def("validate_ifname", [](const std::string& s) { diyc::bindings::ThrowIfError(ValidateIfName(s)); });
  m.def("validate_netns_name", [](const std::string& s) { diyc::bindings::ThrowIfError(ValidateNetnsName(s)); });
  m.def("parse_cidr", &ParseCidr);
  m.def("parse_ip", &ParseIp);

  m.def(
      "sysctl_set",
      [](const Netns* ns, const std::string& key, const std::string& value) {
        diyc::bindings::ThrowIfError(WriteSysctl(ns, key, value));
      },
      py::arg("netns").none(true), py::arg("key"), py::arg("value"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "sysctl_get",
      [](const Netns* ns, const std::string& key) { return diyc::bindings::ValueOrThrow(ReadSysctl(ns, key)); },
      py::arg("netns").none(true), py::arg("key"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "ping",
      [](const Netns* ns, const std::string& dst, int count, double timeout, double interval) {
        IpAddress address = diyc::bindings::ValueOrThrow(IpAddress::Parse(dst));
        PingOptions options{.count = count, .timeout = absl::Seconds(timeout), .interval = absl::Seconds(interval)};
        PingResult r = diyc::bindings::ValueOrThrow(Ping(ns, address, options));
        return std::make_tuple(r.sent, r.received, r.rtts_ms);
      },
      py::arg("netns").none(true), py::arg("dst"), py::arg("count"), py::arg("timeout"), py::arg("interval"),
      py::call_guard<py::gil_scoped_release>());
}
