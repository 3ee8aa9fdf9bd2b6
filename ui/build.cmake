# The web console's build step (CMake target "ui", run by every build): installs the npm
# packages of ui/package-lock.json when they are missing or older than the lock file
# (`npm ci`, as scripts/deps.sh does), then copies the console (ui/src/) and uPlot's dist
# files into DST (build/ui/, served under /ui/: api/static_ui.h, docs/console.md).
# cmake -DUI=<repo>/ui -DDST=<build>/ui -P ui/build.cmake
set(stamp "${UI}/node_modules/.package-lock.json")
set(need_ci FALSE)
if(NOT EXISTS "${stamp}" OR NOT EXISTS "${UI}/node_modules/uplot/dist/uPlot.esm.js")
  set(need_ci TRUE)
elseif("${UI}/package-lock.json" IS_NEWER_THAN "${stamp}")
  set(need_ci TRUE)
endif()
if(need_ci)
  find_program(NPM npm)
  if(NOT NPM)
    message(FATAL_ERROR "ui: npm is not installed, so the web console cannot be built: run "
                        "scripts/deps.sh (installs nodejs and npm, then runs npm ci in ui/)")
  endif()
  message(STATUS "ui: npm ci in ${UI}")
  execute_process(COMMAND ${NPM} ci --no-audit --no-fund --loglevel=error
                  WORKING_DIRECTORY "${UI}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ui: `npm ci` failed in ${UI} (exit ${rc}), so the web console "
                        "cannot be built: the npm registry must be reachable once (see above)")
  endif()
endif()
file(MAKE_DIRECTORY "${DST}/lib")
file(GLOB_RECURSE files RELATIVE "${UI}/src" "${UI}/src/*")
foreach(f ${files})
  get_filename_component(d "${DST}/${f}" DIRECTORY)
  file(COPY "${UI}/src/${f}" DESTINATION "${d}")
endforeach()
file(COPY "${UI}/node_modules/uplot/dist/uPlot.esm.js" "${UI}/node_modules/uplot/dist/uPlot.min.css"
     DESTINATION "${DST}/lib")
