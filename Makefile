# The two commands (README): `make demo` and `make check`.
# A thin layer over scripts/bootstrap.sh and CMake; the real build is CMakeLists.txt.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ASAN_DIR := build/asan
RELEASE_DIR := build/release

.PHONY: all check demo demo-aws build release test unit e2e bench fuzz clean

all: release

# Installs what is missing, builds with ASan+UBSan, runs every test, ends with ctest's summary.
check:
	@scripts/bootstrap.sh check
	@cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@scripts/run-tests.sh $(ASAN_DIR)

# Installs what is missing, builds, and runs kiln's main job on the local provider:
# build, rollout under load, a refused broken release, rollback (scripts/demo.sh says what).
demo: release
	@scripts/bootstrap.sh demo
	@scripts/demo.sh $(RELEASE_DIR)/cli/kiln

# kiln's aws provider against moto, an AWS emulator on loopback (moto_server must be installed).
demo-aws: release
	@scripts/demo-aws.sh $(RELEASE_DIR)/cli/kiln

release:
	@scripts/bootstrap.sh build
	@cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
	@cmake --build $(RELEASE_DIR) -j $(JOBS)

build: release

unit:
	@cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@cd $(ASAN_DIR) && ctest -L unit --output-on-failure -j $(JOBS)

# Builds the fuzz targets with clang (build/fuzz) and runs each for FUZZ_SECONDS;
# FUZZ_TARGETS picks some, FUZZ_MERGE=1 keeps what they found (docs/fuzzing.md).
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/bootstrap.sh fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) scripts/fuzz.sh

clean:
	rm -rf build
