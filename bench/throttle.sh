#!/bin/bash
# bench/throttle.sh: kiln's client-side token buckets against a server that
# enforces EC2's. moto behind the test front (tests/front/front.py), the
# front configured with exactly the buckets kiln keeps (aws_throttle
# --front-config prints them from aws/ratelimit.c's table), and
# bench/aws_throttle driving the aws provider through more calls of each
# class than the buckets allow at once: 1000 instances launched 10 at a
# time, 500 describes, 300 tag calls and 143 stop calls from three threads
# at once, 200 terminate calls (see bench/aws_throttle.c; --batch 100
# launches 100 at a time, where moto, not the bucket, sets the pace).
#
# Prints, per phase, the least time the buckets allow (bound) and the wall
# time, then the front's count of throttling replies. The targets: zero
# throttling replies, and a wall time within 10% of the bound.
#
#   bench/throttle.sh                       # builds build/release if needed
#   COMPARE=1 bench/throttle.sh             # then again with KILN_AWS_RATE_LIMIT=off
#   ARGS="--instances 200 --describes 150" bench/throttle.sh
#
# Needs root (unshare --net), moto_server (the pyenv python3), jq, curl.
# Runs in a network namespace of its own holding only loopback; stops what
# it starts by pid. The machine may be shared: the load average is printed
# before and after.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
py=${KILN_PYTHON:-python3}
build=${BUILD_DIR:-$src/build/release}

die() { echo "throttle: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "throttle: skipped: unshare --net needs root" >&2; exit 77; }
for c in moto_server jq curl; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c"
done

if [ ! -x "$build/bench/aws_throttle" ]; then
	echo "building bench/aws_throttle (Release) in $build ..."
	cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null &&
		cmake --build "$build" -j 2 --target aws_throttle >/dev/null || die "cannot build aws_throttle"
fi
bench=$build/bench/aws_throttle

if [ -z "${KILN_BENCH_NETNS:-}" ]; then
	export KILN_BENCH_NETNS=1
	exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up

T=$(mktemp -d /tmp/kiln-bench-throttle.XXXXXX)
PIDS=""
finish() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap finish EXIT

free_port() {
	"$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
	local i
	for i in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
	return 1
}

MOTO_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$T/moto.log" 2>&1 &
PIDS="$PIDS $!"
MOTO=http://127.0.0.1:$MOTO_PORT
wait_http "$MOTO/moto-api/data.json" || die "moto did not start"
mkfifo "$T/front.ready"
"$py" "$src/tests/front/front.py" --listen 127.0.0.1:0 --upstream "$MOTO" >"$T/front.ready" \
	2>"$T/front.log" &
PIDS="$PIDS $!"
read -r -t 30 line <"$T/front.ready" || die "the front did not start"
FRONT=http://127.0.0.1:${line#ready }

export HOME=$T AWS_ENDPOINT_URL=$FRONT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIAKILNBENCH0000000 \
	AWS_SECRET_ACCESS_KEY=kilnBenchSecret AWS_EC2_METADATA_DISABLED=true KILN_STATE_DIR=$T/state
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_MAX_ATTEMPTS

"$bench" --front-config >"$T/buckets.json" || die "aws_throttle --front-config failed"
echo "front buckets (kiln's table): $(cat "$T/buckets.json")"

# run LABEL: a fresh moto and front state, then the workload
run() {
	local label=$1 rc
	curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"upstream": true}' \
		"$FRONT/__front/reset" || die "cannot reset the front"
	curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d @"$T/buckets.json" \
		"$FRONT/__front/config" || die "cannot configure the front"
	echo
	echo "== $label (KILN_AWS_RATE_LIMIT=${KILN_AWS_RATE_LIMIT:-unset})   load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$bench" ${ARGS:-} >"$T/$label.out" 2>"$T/$label.err"
	rc=$?
	grep -v '^{' "$T/$label.out"
	head -5 "$T/$label.err"
	curl -sf "$FRONT/__front/stats" >"$T/$label.stats"
	grep '^{' "$T/$label.out" | tail -1 >"$T/$label.json"
	[ -s "$T/$label.json" ] || echo '{"counters": {}, "failures": null, "wall_s": 0, "bound_s": 1}' >"$T/$label.json"
	echo "front: $(jq -r '.total' "$T/$label.stats") requests, $(jq -r '.throttled' "$T/$label.stats") throttled" \
		"$(jq -c '.throttled_by_action' "$T/$label.stats")"
	echo "kiln: $(jq '[.counters[].attempts] | add' "$T/$label.json") attempts," \
		"$(jq '[.counters[].throttled] | add' "$T/$label.json") throttled," \
		"$(jq '[.counters[].waits] | add' "$T/$label.json") waits for the client-side buckets" \
		"($(jq '[.counters[].wait_ms] | add / 1000' "$T/$label.json") s), $(jq .failures "$T/$label.json") failed calls" \
		"(exit $rc)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
	return $rc
}

rc=0
run limited || rc=1
throttled=$(jq -r .throttled "$T/limited.stats")
ratio=$(jq -r '.wall_s / .bound_s' "$T/limited.json")
echo
echo "targets: throttling replies $throttled (want 0); wall / bound $ratio (want <= 1.10)"
[ "$throttled" = 0 ] || rc=1
jq -e '.wall_s <= 1.10 * .bound_s' "$T/limited.json" >/dev/null || rc=1

if [ -n "${COMPARE:-}" ]; then
	KILN_AWS_RATE_LIMIT=off run unlimited
fi
exit $rc
