# Turns a BPF C program into a bpftool skeleton header, so the object is
# embedded in the binaries (nothing is loaded from a path at run time).
#
#   sebpf_add_bpf_skeleton(<target> SOURCE <file.bpf.c>)
#
# creates an INTERFACE library <target> whose include directory holds
# <name>.skel.h, where <name> is the source's basename without .bpf.c.
# clang writes the headers the program includes to a depfile, so editing
# any of them rebuilds it (a list kept by hand missed a new header once).

find_program(SEBPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(SEBPF_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# The BPF target has no asm/ of its own: use the host's multiarch uapi dir.
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
                OUTPUT_VARIABLE SEBPF_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)

function(sebpf_add_bpf_skeleton target)
  cmake_parse_arguments(ARG "" "SOURCE" "" ${ARGN})
  get_filename_component(src ${ARG_SOURCE} ABSOLUTE)
  get_filename_component(name ${src} NAME)
  string(REPLACE ".bpf.c" "" name ${name})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/skel)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)

  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${SEBPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_x86
            -Wall -Wextra -Werror
            -I/usr/include/${SEBPF_MULTIARCH} -I${CMAKE_CURRENT_SOURCE_DIR}
            -MD -MF ${obj}.d -c ${src} -o ${obj}
    DEPENDS ${src}
    DEPFILE ${obj}.d
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${SEBPF_BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${target}_gen DEPENDS ${skel})
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_gen)
  # SYSTEM: the generated skeleton is not ours to warn about.
  target_include_directories(${target} SYSTEM INTERFACE ${out_dir})
  target_include_directories(${target} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} INTERFACE PkgConfig::LIBBPF)
endfunction()
