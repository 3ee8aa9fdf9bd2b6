# Thin wrapper over CMake. Every target first installs missing Debian packages
# (scripts/deps.sh, idempotent).
#   make          build build/fleetvault
#   make test     build, then run every test: unit + end-to-end + crash (release build),
#                 the same under ASan+UBSan, and the libFuzzer targets briefly
#   make demo     run the main job: certs, server on ./data, a simulated fleet
#   make fuzz     build the fuzz targets only (build-fuzz/)
JOBS ?= $(shell nproc)

.PHONY: all deps build test test-fast test-asan test-fuzz demo fuzz bench clean format

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build >/dev/null
	@cmake --build build -j $(JOBS)

test: test-fast test-asan test-fuzz

test-fast: build
	cd build && ctest --output-on-failure -j 2

# The browser tests (browser/: the web console in chromium) run in the release build only.
# Under ASan the fault matrices (tests/e2e/test_faults.py) get 80 s instead of 195 s: the
# release run has the full budget, and CI's time is bounded. The two longest cluster tests
# (a 3-server NATS cluster killed mid-stream, lease takeovers: about a minute of ASan time)
# run in the release build only; every other cluster test runs under ASan too.
test-asan: deps
	@cmake -S . -B build-asan -DFV_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		FV_ASAN=1 FV_FAULT_BUDGET=60 FV_FAULT_RECOVERY_BUDGET=20 \
		ctest --output-on-failure -j 2 -E 'crash|fuzz/|browser/|e2e/test_cluster_(nats3|leases)$$'

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DFV_FUZZ=ON -DFV_SANITIZE=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

test-fuzz: fuzz
	cd build-fuzz && ctest --output-on-failure -j 2 -R 'fuzz/'

demo: build
	@scripts/demo.sh

bench: build
	@bench/ingest/run.sh

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c' | grep -v signals_table.c)

clean:
	rm -rf build build-asan build-fuzz
