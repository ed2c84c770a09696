# Hardened code generation for everything diyc builds: PIE executables, full
# RELRO, stack protector, _FORTIFY_SOURCE.
include(CheckPIESupported)
check_pie_supported()
add_compile_options(-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -fstack-protector-strong)
if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
  add_compile_definitions(_FORTIFY_SOURCE=2)
endif()
add_link_options(-Wl,-z,relro,-z,now -Wl,-z,noexecstack)
option(DIYC_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
if(DIYC_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
