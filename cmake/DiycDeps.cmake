# Every external dependency, all from Debian 12 packages (see ci/install-deps.sh).
find_package(PkgConfig REQUIRED)
pkg_check_modules(NL REQUIRED IMPORTED_TARGET libnl-3.0 libnl-route-3.0)
find_package(absl CONFIG REQUIRED)
find_package(Threads REQUIRED)

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
