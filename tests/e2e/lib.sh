# tests/e2e/lib.sh: what every end-to-end suite sources, in the manner of
# git's t/test-lib.sh.
#
#	#!/bin/bash
#	test_description='what this suite checks'
#	. "$(dirname "$0")/lib.sh"
#	start_moto
#	test_expect_success 'kiln whoami names the account' '
#		"$KILN" whoami >out &&
#		grep -q 123456789012 out
#	'
#	test_done
#
# A suite re-executes itself inside a network namespace of its own
# (unshare --net) holding only loopback, so nothing it runs can reach a real
# AWS endpoint by mistake; servers it starts listen on free loopback ports
# there and are stopped by PID when the suite exits, whatever happens.
#
# Tests run in the suite's shell, one after another, in its trash directory
# (tests/e2e/trash.NAME, removed when every test passed, kept for a look
# otherwise); variables set by one test are seen by the next. Output of the
# commands goes to trash/NAME.out unless -v (or KILN_E2E_VERBOSE=1).
#
# Exit status: 0 all passed, 1 some failed, 77 skipped (ctest's
# SKIP_RETURN_CODE: not root, no unshare, no moto_server ...).

# ---- the namespace ----------------------------------------------------------------

skip_all() {
	echo "skipped: $*"
	exit 77
}

if [ -z "${KILN_E2E_NETNS:-}" ]; then
	[ "$(id -u)" = 0 ] || skip_all "needs root for unshare --net"
	command -v unshare >/dev/null 2>&1 || skip_all "no unshare (util-linux)"
	command -v ip >/dev/null 2>&1 || skip_all "no ip (iproute2)"
	export KILN_E2E_NETNS=1
	exec unshare --net -- "$BASH" "$0" "$@"
fi
ip link set lo up || skip_all "cannot bring up loopback in the namespace"

# ---- where things are ----------------------------------------------------------------

TEST_NAME=$(basename "$0" .sh)
TEST_DIRECTORY=$(cd "$(dirname "$0")" && pwd)
KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$TEST_DIRECTORY/../.." && pwd)}
KILN_BINARY_DIR=${KILN_BINARY_DIR:-$KILN_SOURCE_DIR/build/asan}
KILN=${KILN:-$KILN_BINARY_DIR/cli/kiln}
KILN_AWS_DRIVER=${KILN_AWS_DRIVER:-$KILN_BINARY_DIR/tests/kiln-aws-driver}
export KILN KILN_AWS_DRIVER KILN_SOURCE_DIR KILN_BINARY_DIR
[ -x "$KILN" ] || skip_all "no kiln binary at '$KILN' (build first, or set KILN)"

TRASH_DIRECTORY="$TEST_DIRECTORY/trash.$TEST_NAME"
rm -rf "$TRASH_DIRECTORY"
mkdir -p "$TRASH_DIRECTORY" || exit 1
cd "$TRASH_DIRECTORY" || exit 1

verbose=${KILN_E2E_VERBOSE:-}
for arg in "$@"; do
	case "$arg" in
	-v | --verbose) verbose=1 ;;
	esac
done

# A clean environment: nothing from the caller's AWS setup or kiln state
# leaks in (HOME holds no ~/.aws), and no proxy stands between us and
# loopback.
export HOME="$TRASH_DIRECTORY"
export KILN_STATE_DIR="$TRASH_DIRECTORY/state"
export NO_COLOR=1
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_CA_BUNDLE \
	AWS_ENDPOINT_URL_EC2 AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 \
	AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING AWS_ENDPOINT_URL_SSM AWS_ENDPOINT_URL_STS \
	AWS_MAX_ATTEMPTS KILN_PROVIDER KILN_DEBUG KILN_AWS_RATE_LIMIT \
	AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME \
	AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI \
	AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE \
	AWS_METADATA_SERVICE_TIMEOUT AWS_METADATA_SERVICE_NUM_ATTEMPTS \
	http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
export AWS_SHARED_CREDENTIALS_FILE="$TRASH_DIRECTORY/.aws/credentials"
export AWS_CONFIG_FILE="$TRASH_DIRECTORY/.aws/config"
export AWS_ACCESS_KEY_ID=AKIAKILNE2ETEST00000
export AWS_SECRET_ACCESS_KEY=kilnE2eTestSecretKey0000000000000000000
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# The chain's last resort is 169.254.169.254; suites that test it point
# AWS_EC2_METADATA_SERVICE_ENDPOINT at tests/imds/imds.py and unset this.
export AWS_EC2_METADATA_DISABLED=true

# ---- servers, stopped by PID -----------------------------------------------------------

KILN_E2E_PIDS=

# Remembers a PID to stop when the suite ends.
track_pid() {
	KILN_E2E_PIDS="$KILN_E2E_PIDS $1"
}

stop_pid() {
	kill "$1" 2>/dev/null || return 0
	wait "$1" 2>/dev/null
	return 0
}

kiln_e2e_cleanup() {
	local pid
	for pid in $KILN_E2E_PIDS; do
		stop_pid "$pid"
	done
	KILN_E2E_PIDS=
}
trap 'kiln_e2e_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on loopback (inside the namespace nearly any is).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls URL until it answers, up to $2 tenths of a second (default 150).
wait_for_url() {
	local url=$1 tries=${2:-150}
	while [ "$tries" -gt 0 ]; do
		curl -sf -o /dev/null --max-time 2 "$url" && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# Waits until something listens on loopback port $1, up to $2 tenths of a second (default 150).
wait_for_port() {
	local tries=${2:-150}
	while [ "$tries" -gt 0 ]; do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# Starts moto_server on a free loopback port; sets MOTO_PORT, MOTO_URL, MOTO_PID
# and points every AWS endpoint at it. Extra arguments are environment
# assignments for moto (INITIAL_NO_AUTH_ACTION_COUNT=5 ...).
start_moto() {
	command -v moto_server >/dev/null 2>&1 || skip_all "no moto_server on PATH"
	command -v curl >/dev/null 2>&1 || skip_all "no curl"
	MOTO_PORT=$(free_port) || skip_all "cannot pick a port"
	MOTO_URL="http://127.0.0.1:$MOTO_PORT"
	env "$@" moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$TRASH_DIRECTORY/moto.log" 2>&1 &
	MOTO_PID=$!
	track_pid "$MOTO_PID"
	if ! wait_for_url "$MOTO_URL/moto-api/data.json"; then
		echo "error: moto_server did not answer on $MOTO_URL; its log:" >&2
		tail -20 "$TRASH_DIRECTORY/moto.log" >&2
		exit 1
	fi
	export MOTO_PORT MOTO_URL AWS_ENDPOINT_URL="$MOTO_URL"
}

# Clears moto's state (ids of VPCs, subnets and groups change; AMI ids stay).
moto_reset() {
	curl -sf -o /dev/null -X POST "$MOTO_URL/moto-api/reset"
}

# Starts tests/front/front.py before moto; sets FRONT_PORT, FRONT_URL,
# FRONT_PID and points every AWS endpoint at the front. $1: a config file (optional).
start_front() {
	local front="$KILN_SOURCE_DIR/tests/front/front.py" fifo line
	[ -f "$front" ] || skip_all "no tests/front/front.py"
	fifo="$TRASH_DIRECTORY/front.ready"
	rm -f "$fifo"
	mkfifo "$fifo"
	python3 "$front" --listen 127.0.0.1:0 --upstream "$MOTO_URL" ${1:+--config "$1"} \
		--log "$TRASH_DIRECTORY/front.jsonl" >"$fifo" 2>"$TRASH_DIRECTORY/front.log" &
	FRONT_PID=$!
	track_pid "$FRONT_PID"
	# "ready PORT" on its stdout once it listens
	if ! read -r -t 30 line <"$fifo" || [ "${line%% *}" != ready ]; then
		echo "error: the front did not start; its log:" >&2
		tail -20 "$TRASH_DIRECTORY/front.log" >&2
		exit 1
	fi
	FRONT_PORT=${line#ready }
	FRONT_URL="http://127.0.0.1:$FRONT_PORT"
	export FRONT_PORT FRONT_URL AWS_ENDPOINT_URL="$FRONT_URL"
}

# Replaces the front's configuration with the JSON in $1.
front_config() {
	curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$1" "$FRONT_URL/__front/config"
}

front_stats() {
	curl -sf "$FRONT_URL/__front/stats"
}

# The AWS CLI against whatever AWS_ENDPOINT_URL points at (setting up what
# kiln expects to find: target groups, load balancers, IAM users).
aws_cli() {
	aws --output json "$@"
}

# ---- tests --------------------------------------------------------------------------------

test_count=0
test_passed=0
test_failed=0
test_fixed=0
test_broken=0

say() {
	printf '%s\n' "$*"
}

test_run_() {
	local out="$TRASH_DIRECTORY/$TEST_NAME.out"
	if [ -n "$verbose" ]; then
		cd "$TRASH_DIRECTORY" && eval "$1"
		return
	fi
	# eval in this shell, so variables set by a test are seen by the next
	cd "$TRASH_DIRECTORY" && { eval "$1"; } >>"$out" 2>&1
}

# test_expect_success TITLE COMMANDS
test_expect_success() {
	local rc
	test_count=$((test_count + 1))
	[ -n "$verbose" ] && say "expecting success of $test_count: $1"
	printf '\n=== %d: %s\n' "$test_count" "$1" >>"$TRASH_DIRECTORY/$TEST_NAME.out"
	test_run_ "$2"
	rc=$?
	if [ $rc -eq 0 ]; then
		test_passed=$((test_passed + 1))
		say "ok $test_count - $1"
	else
		test_failed=$((test_failed + 1))
		say "not ok $test_count - $1 (exit $rc)"
		if [ -z "$verbose" ]; then
			# what the failing test printed, for ctest's log
			sed -n "/^=== $test_count: /,\$p" "$TRASH_DIRECTORY/$TEST_NAME.out" | tail -40 | sed 's/^/#	/'
		fi
	fi
}

# test_expect_failure TITLE COMMANDS: a known breakage, reported but not failing the suite.
test_expect_failure() {
	test_count=$((test_count + 1))
	printf '\n=== %d: %s\n' "$test_count" "$1" >>"$TRASH_DIRECTORY/$TEST_NAME.out"
	if test_run_ "$2"; then
		test_fixed=$((test_fixed + 1))
		say "ok $test_count - $1 # TODO known breakage vanished"
	else
		test_broken=$((test_broken + 1))
		say "not ok $test_count - $1 # TODO known breakage"
	fi
}

# test_must_fail CMD...: CMD fails the ordinary way (exit 1-125), not by a signal or a crash.
test_must_fail() {
	local rc
	"$@"
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "test_must_fail: '$*' succeeded" >&2
		return 1
	elif [ $rc -gt 125 ]; then
		echo "test_must_fail: '$*' died (exit $rc)" >&2
		return 1
	fi
	return 0
}

# test_expect_code N CMD...: CMD exits with N.
test_expect_code() {
	local want=$1 rc
	shift
	"$@"
	rc=$?
	[ $rc -eq "$want" ] && return 0
	echo "test_expect_code: '$*' exited $rc, wanted $want" >&2
	return 1
}

# test_cmp EXPECTED ACTUAL
test_cmp() {
	diff -u "$@"
}

# test_line_count OP N FILE: "test_line_count = 1 err"
test_line_count() {
	local n
	n=$(wc -l <"$3")
	if ! [ "$n" "$1" "$2" ]; then
		echo "test_line_count: $3 has $n lines, wanted $1 $2:" >&2
		cat "$3" >&2
		return 1
	fi
}

test_done() {
	local extra=
	[ $test_broken -gt 0 ] && extra=", $test_broken known breakage(s)"
	[ $test_fixed -gt 0 ] && extra="$extra, $test_fixed fixed"
	say "$test_passed passed, $test_failed failed$extra"
	kiln_e2e_cleanup
	if [ $test_failed -eq 0 ]; then
		cd "$TEST_DIRECTORY" && rm -rf "$TRASH_DIRECTORY"
		exit 0
	fi
	say "# kept $TRASH_DIRECTORY"
	exit 1
}
