# Build-speed helpers: ccache when present, a fast linker (mold, else gold) when the compiler accepts it.
# ccache is told three things, so that it caches every object and a second checkout of the tree
# (CI's, another build folder) hits what the first one compiled:
# - paths under the source tree are hashed relative to it (CCACHE_BASEDIR) and the working folder
#   is left out of the hash (CCACHE_NOHASHDIR; debug info then names the first checkout's folder);
#   the compiler is then given relative source paths, so __FILE__ is relative to the build folder
#   and must not be used to find files (tests use ZIPRERANK_TEST_FIXTURES);
# - objects built with a precompiled header are cacheable (pch_defines, time_macros: without them
#   ccache compiles every such object afresh, "could not use precompiled header").
find_program(ZIPRERANK_CCACHE ccache)
if(ZIPRERANK_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_NOHASHDIR=1
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${ZIPRERANK_CCACHE})
  message(STATUS "ziprerank: using ccache")
endif()

include(CheckCXXSourceCompiles)
if(NOT ZIPRERANK_LINKER_CHECKED)
  set(ZIPRERANK_LINKER_CHECKED TRUE CACHE INTERNAL "")
  foreach(linker mold gold)
    set(CMAKE_REQUIRED_LINK_OPTIONS "-fuse-ld=${linker}")
    check_cxx_source_compiles("int main() { return 0; }" ZIPRERANK_HAS_LD_${linker})
    unset(CMAKE_REQUIRED_LINK_OPTIONS)
    if(ZIPRERANK_HAS_LD_${linker})
      set(ZIPRERANK_LINKER ${linker} CACHE INTERNAL "")
      break()
    endif()
  endforeach()
endif()
if(ZIPRERANK_LINKER)
  add_link_options(-fuse-ld=${ZIPRERANK_LINKER})
  message(STATUS "ziprerank: linking with ${ZIPRERANK_LINKER}")
endif()
