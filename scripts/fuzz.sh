#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for a while, one
# after the other (docs/fuzzing.md). `make fuzz` calls it.
#
#   FUZZ_SECONDS=60     how long each target runs
#   FUZZ_TARGETS="..."  which (names as in tests/fuzz/fuzz_NAME.c); default all
#   FUZZ_MERGE=1        afterwards, merge the new inputs that reach new edges
#                       (libFuzzer -merge=1 -use_counters=0, the smallest input
#                       for each) into the committed corpus tests/fuzz/corpus/NAME
#   FUZZ_DIR=build/fuzz the build, scratch corpora, crash artifacts and logs
#   FUZZ_NICE=10        nice level of the fuzzers (shared machines)
#   FUZZ_ARGS="..."     more libFuzzer options, e.g. -max_len=8192
#   JOBS=2              parallel compile jobs
#
# New inputs go to FUZZ_DIR/corpus/NAME (kept between runs, so fuzzing
# resumes), never to the committed corpus unless FUZZ_MERGE=1. A crash,
# leak, sanitizer report or failed check stops that target; its input is
# saved as FUZZ_DIR/artifacts/NAME/crash-... and the script carries on with
# the next target, then exits 1. Ends with a table of execs, exec/s and
# coverage (cov: edges, ft: features) per target, from libFuzzer's own
# final report.
set -eu

cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
dir=${FUZZ_DIR:-build/fuzz}
nice_level=${FUZZ_NICE:-10}
jobs=${JOBS:-2}
merge=${FUZZ_MERGE:-0}
targets=${FUZZ_TARGETS:-$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)}

cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "fuzz: '$cc' not found; install it with: scripts/bootstrap.sh fuzz" >&2
	exit 2
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
	sed 's/^/  /' "$probe/err" >&2
	echo "fuzz: '$cc' cannot link libFuzzer; install it with: scripts/bootstrap.sh fuzz" >&2
	exit 2
fi

echo "fuzz: building with $cc in $dir"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$cc" -DKILN_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 || {
	tail -30 "$dir/build.log" >&2
	echo "fuzz: build failed; see $dir/build.log" >&2
	exit 1
}

# Extra seeds that must not be committed: the official SigV4 suite's
# requests are read from ../shared (DESIGN.md: never copied into the repo),
# into the build dir only. libFuzzer reads them; only inputs it finds new go
# to the scratch corpus, and only those are ever merged.
extra_seeds() {
	case "$1" in
	sigv4)
		suite=../shared/testdata/aws-signing-test-suite/v4
		[ -d "$suite" ] || return 0
		mkdir -p "$dir/seeds/sigv4"
		for r in "$suite"/*/request.txt; do
			[ -f "$r" ] && cp "$r" "$dir/seeds/sigv4/$(basename "$(dirname "$r")").txt"
		done
		echo "$dir/seeds/sigv4"
		;;
	esac
}

# "name value" lines from a libFuzzer log: the final stats and the last
# status line (#N DONE cov: C ft: F corp: U/S ...).
stats() {
	awk '
	/^stat::number_of_executed_units:/ { execs = $2 }
	/^stat::average_exec_per_sec:/ { rate = $2 }
	/^stat::new_units_added:/ { added = $2 }
	/^stat::peak_rss_mb:/ { rss = $2 }
	/^#[0-9]+[ \t]/ {
		for (i = 1; i < NF; i++) {
			if ($i == "cov:") cov = $(i + 1)
			if ($i == "ft:") ft = $(i + 1)
			if ($i == "corp:") corp = $(i + 1)
		}
		n = substr($1, 2)
	}
	END {
		if (execs == "") execs = n
		printf "%s %s %s %s %s %s %s\n", execs == "" ? "-" : execs, rate == "" ? "-" : rate,
			cov == "" ? "-" : cov, ft == "" ? "-" : ft, corp == "" ? "-" : corp,
			added == "" ? "-" : added, rss == "" ? "-" : rss
	}' "$1"
}

mkdir -p "$dir/logs"
summary="$dir/summary.txt"
printf '%-12s %12s %8s %7s %8s %12s %6s %7s  %s\n' target execs exec/s cov ft corpus new rss_mb result >"$summary"
failed=0
for name in $targets; do
	bin="$dir/tests/fuzz/fuzz_$name"
	committed="tests/fuzz/corpus/$name"
	scratch="$dir/corpus/$name"
	artifacts="$dir/artifacts/$name/"
	log="$dir/logs/$name.log"
	if [ ! -x "$bin" ]; then
		echo "fuzz: no target '$name' (tests/fuzz/fuzz_$name.c)" >&2
		failed=1
		continue
	fi
	mkdir -p "$scratch" "$artifacts" "$committed"
	set -- -max_total_time="$secs" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 \
		-artifact_prefix="$artifacts"
	[ -f "tests/fuzz/$name.dict" ] && set -- "$@" -dict="tests/fuzz/$name.dict"
	# shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
	set -- "$@" ${FUZZ_ARGS:-} "$scratch" "$committed" $(extra_seeds "$name")
	echo "fuzz: $name for ${secs}s (log: $log)"
	result=ok
	if ! nice -n "$nice_level" "$bin" "$@" >"$log" 2>&1; then
		result="FAILED: $(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/Test unit written to //')"
		[ "$result" = "FAILED: " ] && result="FAILED (see $log)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed)' "$log" | head -3 | sed 's/^/  /' >&2 || true
		failed=1
	elif [ "$merge" = 1 ]; then
		before=$(find "$committed" -type f | wc -l)
		# -use_counters=0: keep inputs that reach new edges, not every new
		# loop count (that would be thousands of files for the repo)
		if nice -n "$nice_level" "$bin" -merge=1 -use_counters=0 "$committed" "$scratch" \
			>"$dir/logs/$name.merge.log" 2>&1; then
			after=$(find "$committed" -type f | wc -l)
			result="ok, merged $((after - before)) new inputs into $committed"
		else
			result="ok, merge FAILED (see $dir/logs/$name.merge.log)"
			failed=1
		fi
	fi
	set -- $(stats "$log")
	printf '%-12s %12s %8s %7s %8s %12s %6s %7s  %s\n' "$name" "$1" "$2" "$3" "$4" "$5" "$6" "$7" \
		"$result" >>"$summary"
done

echo
cat "$summary"
exit $failed
