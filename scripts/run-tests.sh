#!/bin/sh
# Runs every ctest test of a build directory and ends with ctest's summary.
# Unit tests run in parallel; the e2e suites one at a time (they start
# servers and containers). Exits non-zero if any test failed.
set -u
dir=${1:?usage: run-tests.sh BUILD_DIR}
jobs=$(nproc 2>/dev/null || echo 2)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir" || exit 2
ctest --output-on-failure -L unit -j "$jobs" ; unit=$?
ctest --output-on-failure -L e2e ; e2e=$?
[ $unit -eq 0 ] && [ $e2e -eq 0 ] && echo "all tests passed" && exit 0
echo "tests failed (unit: exit $unit, e2e: exit $e2e)"
exit 1
