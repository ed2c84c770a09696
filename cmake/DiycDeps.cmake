# Every external dependency, all from Debian 12 packages (see ci/install-deps.sh).
find_package(PkgConfig REQUIRED)
pkg_check_modules(NL REQUIRED IMPORTED_TARGET libnl-3.0 libnl-route-3.0)
pkg_check_modules(NFT REQUIRED IMPORTED_TARGET libnftables)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
find_package(absl CONFIG REQUIRED)
find_package(Threads REQUIRED)
# Debian's libprotobuf-dev ships no CMake config: module mode it is.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)

if(DIYC_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

if(DIYC_BUILD_PYTHON)
  # Debian's interpreter has the python3-* packages; a python3 earlier on PATH
  # (pyenv and the like) does not.
  set(PYBIND11_FINDPYTHON ON)
  if(NOT Python_EXECUTABLE)
    set(Python_EXECUTABLE /usr/bin/python3)
  endif()
  find_package(pybind11 CONFIG REQUIRED)
endif()
