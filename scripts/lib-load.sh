# lib-load.sh: HTTP load through a balancer while kiln works, counting the
# requests that fail. Sourced by scripts/demo.sh, tests/e2e/t0510-local-flow.sh
# and bench/local-flow.sh (bash).
#
#	load_start http://127.0.0.1:8080/   # wrk in the background
#	kiln rollout ...
#	load_stop                           # sets LOAD_SENT, LOAD_FAILED, LOAD_LINE
#
# A request fails when it gets no response (connect, read or write error,
# or no answer within LOAD_TIMEOUT) or a status of 400 or more: wrk's own
# count of non-2xx/3xx, so every 5xx is in it (scripts/wrk-report.lua).
# The load is bounded: wrk stops by itself after LOAD_MAX_S whatever
# happens, and is stopped by pid (SIGINT: it then prints its summary).
#
#   LOAD_CONNECTIONS  concurrent connections (default 4: the machines this
#                     runs on have 2 cores, shared with the containers)
#   LOAD_TIMEOUT      seconds without an answer before a request fails (10)
#   LOAD_MAX_S        wrk's duration, the bound (900)

LOAD_LUA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/wrk-report.lua
LOAD_PID=
LOAD_OUT=
LOAD_SENT=0
LOAD_FAILED=0
LOAD_LINE=

# load_start URL [OUT]: OUT keeps wrk's report (default: a temporary file).
load_start() {
	local url=$1
	LOAD_OUT=${2:-$(mktemp /tmp/kiln-load.XXXXXX)}
	wrk -t1 -c"${LOAD_CONNECTIONS:-4}" -d"${LOAD_MAX_S:-900}s" --timeout "${LOAD_TIMEOUT:-10}s" \
		-s "$LOAD_LUA" "$url" >"$LOAD_OUT" 2>&1 &
	LOAD_PID=$!
	# wrk connects at once; a moment lets its connections be up before kiln acts
	sleep 0.3
}

# load_stop: returns 1 if wrk reported nothing (it died, or never ran).
load_stop() {
	local line
	LOAD_SENT=0 LOAD_FAILED=0 LOAD_LINE=
	[ -n "$LOAD_PID" ] || return 1
	kill -INT "$LOAD_PID" 2>/dev/null
	wait "$LOAD_PID" 2>/dev/null
	LOAD_PID=
	line=$(grep '^kiln-load: ' "$LOAD_OUT" | tail -1)
	if [ -z "$line" ]; then
		sed 's/^/  wrk: /' "$LOAD_OUT" >&2
		return 1
	fi
	LOAD_LINE=${line#kiln-load: }
	LOAD_SENT=$(printf '%s\n' "$line" | sed -n 's/.* sent=\([0-9]*\).*/\1/p')
	LOAD_FAILED=$(printf '%s\n' "$line" | sed -n 's/.* failed=\([0-9]*\).*/\1/p')
	return 0
}

# load_kill: for EXIT traps, stops wrk if it still runs.
load_kill() {
	if [ -n "$LOAD_PID" ]; then
		kill -INT "$LOAD_PID" 2>/dev/null
		wait "$LOAD_PID" 2>/dev/null
		LOAD_PID=
	fi
}
