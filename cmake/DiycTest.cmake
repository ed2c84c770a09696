include(GoogleTest)

# diyc_add_test(NAME SOURCES ... [DEPENDS ...] [ROOT])
# ROOT marks tests that need root and a kernel with network namespaces; they
# carry the ctest label "root" and skip themselves when not run as root.
function(diyc_add_test name)
  cmake_parse_arguments(ARG "ROOT" "" "SOURCES;DEPENDS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPENDS} GTest::gtest_main GTest::gtest)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  if(ARG_ROOT)
    set(labels root)
    # Every kernel test binary audits the host for what it left behind.
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/netcore/testing/leak_check.cc)
  else()
    set(labels unit)
  endif()
  gtest_discover_tests(${name} PROPERTIES LABELS "${labels}" DISCOVERY_TIMEOUT 30)
endfunction()
