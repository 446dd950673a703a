# Included into llama.cpp's CMake project by scripts/build_llama_server.sh (CMAKE_PROJECT_INCLUDE).
#
# Why: the build must fit a first install on 2 cores. Only ggml and libllama run per token, so
# they keep the Release -O3; the server, its HTTP library, the common helpers (argument parsing,
# chat templates, JSON) and the multimodal code it links but a text model never uses are built
# at -O1, which compiles about 40% faster. The per-token parts of common (sampling) stay -O3.
# Measured: bench/RESULTS.md, "The embedded engine".
include_guard(GLOBAL)

function(_drpo_cold_targets)
    foreach(target llama-common llama-common-base server-context llama-server-impl llama-server
                   cpp-httplib mtmd llama-ui)
        if(TARGET ${target})
            target_compile_options(${target} PRIVATE -O1 -g0)
        endif()
    endforeach()
    if(TARGET llama-common)
        set_source_files_properties("${CMAKE_SOURCE_DIR}/common/sampling.cpp" TARGET_DIRECTORY llama-common
                                    PROPERTIES COMPILE_OPTIONS -O3)
    endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _drpo_cold_targets)
