#!/bin/sh
# Runs every ctest test of a build directory and ends with one summary line,
# "N passed, M failed". Unit tests run in parallel; the e2e suites one at a
# time (they start servers and containers). Exits non-zero if any failed.
set -u
dir=${1:?usage: run-tests.sh BUILD_DIR}
jobs=$(nproc 2>/dev/null || echo 2)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir" || exit 2
log=$(mktemp)
trap 'rm -f "$log" "$log.unit" "$log.e2e"' EXIT
# sh has no pipefail: each run leaves its exit status in a file
{ ctest --output-on-failure -L unit -j "$jobs"; echo $? >"$log.unit"; } | tee "$log"
{ ctest --output-on-failure -L e2e; echo $? >"$log.e2e"; } | tee -a "$log"
unit=$(cat "$log.unit") e2e=$(cat "$log.e2e")
# ctest prints "X% tests passed, F tests failed out of T" once per run
summary=$(awk '/tests passed, .* tests failed out of/ { f += $4; t += $NF }
	END { printf "%d passed, %d failed", t - f, f }' "$log")
echo "$summary"
[ $unit -eq 0 ] && [ $e2e -eq 0 ]
