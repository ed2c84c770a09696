#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "diyc/netcore/netns.h"
#include "status_py.h"

namespace py = pybind11;
using diyc::netcore::Netns;

namespace diyc::bindings {

void InitNetns(pybind11::module_& m) {
  const auto release = pybind11::call_guard<pybind11::gil_scoped_release>();
  pybind11::class_<Netns>(m, "Netns")
      .def_static("create", [](const std::string& name) { return ValueOrThrow(Netns::Create(name)); }, release)
      .def_static("open_name", [](const std::string& name) { return ValueOrThrow(Netns::OpenName(name)); }, release)
      .def_static("open_path", [](const std::string& path) { return ValueOrThrow(Netns::OpenPath(path)); }, release)
      .def_static("open_pid", [](int pid) { return ValueOrThrow(Netns::OpenPid(pid)); }, release)
      .def_static("current", [] { return ValueOrThrow(Netns::Current()); }, release)
      .def_static("remove", [](const std::string& name) { ThrowIfError(Netns::Remove(name)); }, release)
      .def_static("list", [] { return ValueOrThrow(Netns::List()); }, release)
      .def_property_readonly("fd", &Netns::fd)
      .def_property_readonly("name", &Netns::name)
      .def_property_readonly("path", &Netns::path)
      .def_property_readonly("valid", &Netns::valid)
      .def("same_as", [](const Netns& self, const Netns& other) { return ValueOrThrow(self.SameAs(other)); })
      .def("close", &Netns::Close);
}

}  // namespace diyc::bindings
