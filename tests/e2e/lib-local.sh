# lib-local.sh: what the local provider's end-to-end suites share (as git's
# t/lib-httpd.sh beside t/test-lib.sh). Source it from a tNNNN-*.sh script.
#
# It checks the machine can run real containers (else exit 77 saying why),
# makes a private state dir, a test subnet and bridge, and on exit takes
# the local cloud down and removes the state dir, whatever happened.
#
#   KILN_TEST_LOCAL_SUBNET  the suite's subnet (default 10.232.240.0/24)
#   KILN_TEST_LOCAL_BRIDGE  its bridge (default kilne2e0)
#   KILN_LOCAL_BASE_CACHE   where the base image is cached between suites
#                           (default: BUILD_DIR/local-base-cache)
#   KILN_TEST_KEEP=1        leave everything in place on failure, to look

set -u

: "${KILN:?KILN must point at the kiln binary (ctest sets it)}"
: "${KILN_BINARY_DIR:?KILN_BINARY_DIR must be set (ctest sets it)}"
DRIVER=$KILN_BINARY_DIR/tests/kiln-local-driver
TEST_SUBNET=${KILN_TEST_LOCAL_SUBNET:-10.232.240.0/24}
TEST_BRIDGE=${KILN_TEST_LOCAL_BRIDGE:-kilne2e0}
export KILN_LOCAL_BASE_CACHE=${KILN_LOCAL_BASE_CACHE:-$KILN_BINARY_DIR/local-base-cache}
export KILN_LOCAL_SUBNET=$TEST_SUBNET KILN_LOCAL_BRIDGE=$TEST_BRIDGE
# the children kiln starts outlive it; sanitizer reports of kiln itself still fail
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

test_count=0
test_failed=0

say() { printf '# %s\n' "$*"; }
ok() { test_count=$((test_count + 1)); printf 'ok %d - %s\n' "$test_count" "$*"; }
fail() {
	test_count=$((test_count + 1))
	test_failed=$((test_failed + 1))
	printf 'not ok %d - %s\n' "$test_count" "$*"
	exit 1
}
skip_all() { printf '1..0 # SKIP %s\n' "$*"; exit 77; }
# check WHAT COMMAND...: runs it, ok if it succeeds, else fail with its output
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$what"; else printf '%s\n' "$out" | sed 's/^/#   /'; fail "$what"; fi
}

# ---- can this machine run it? ----
[ "$(id -u)" = 0 ] || skip_all "the local provider needs root (containers, mounts, namespaces)"
for tool in systemd-nspawn haproxy apt-cacher-ng ip ssh ssh-keygen curl python3; do
	command -v "$tool" >/dev/null 2>&1 || skip_all "'$tool' is not installed (scripts/bootstrap.sh check)"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || skip_all "no overlayfs in this kernel"
[ -x "$DRIVER" ] || skip_all "no $DRIVER (built without the local provider?)"
BASE_RECIPE=2 # keep in step with KILN_LOCAL_BASE_RECIPE in local/local.h
if [ ! -f "$KILN_LOCAL_BASE_CACHE/debian-12-r$BASE_RECIPE/base.json" ]; then
	command -v mmdebstrap >/dev/null 2>&1 || skip_all "'mmdebstrap' is not installed and no cached base image"
	curl -s -o /dev/null -m 20 http://deb.debian.org/debian/dists/bookworm/Release ||
		skip_all "Debian's mirror is unreachable and no base image is cached in $KILN_LOCAL_BASE_CACHE"
fi

# ---- a private local cloud ----
TEST_DIR=$(mktemp -d /tmp/kiln-e2e-local.XXXXXX)
export KILN_STATE_DIR=$TEST_DIR/state
STATE=$KILN_STATE_DIR/local

local_cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] && [ "${KILN_TEST_KEEP:-}" = 1 ]; then
		say "kept $TEST_DIR (KILN_TEST_KEEP=1): 'KILN_STATE_DIR=$KILN_STATE_DIR $KILN local down --purge' cleans up"
		exit $rc
	fi
	# what the suite left running (load, a launch) must not race the cleanup
	local jobs_left
	jobs_left=$(jobs -p)
	[ -n "$jobs_left" ] && kill $jobs_left 2>/dev/null
	wait 2>/dev/null
	[ $rc -ne 0 ] && KILN_STATE_DIR=$KILN_STATE_DIR "$KILN" local status 2>&1 | sed 's/^/#   /'
	if "$KILN" local down --purge >"$TEST_DIR/down.log" 2>&1; then
		rm -rf "$TEST_DIR"
	else
		# never rm -rf under live mounts: say what is left instead
		sed 's/^/#   /' "$TEST_DIR/down.log"
		say "cleanup: kiln local down --purge failed; $TEST_DIR is left for a look"
		[ $rc -eq 0 ] && rc=1
	fi
	exit $rc
}
trap local_cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command on an instance as root with the suite's key.
on() {
	local ip=$1
	shift
	ssh -i "$TEST_DIR/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=10 "root@$ip" "$@"
}

# Field N (1-based) of the driver's describe line for an instance.
inst_field() { "$DRIVER" describe all "$1" | awk -v f="$2" '{print $f}'; }

# Pids that are alive and not zombies.
live_pids() {
	local p
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		awk '{ s = $0; sub(/.*\) /, "", s); if (substr(s, 1, 1) != "Z") exit 0; exit 1 }' "/proc/$p/stat" && echo "$p"
	done
	return 0
}
