#!/bin/bash
# t0510: kiln's whole flow on the local provider, through the CLI, with real
# containers, a real HAProxy and HTTP load through it (wrk):
#
#   kiln build of a small template (and an instance of its image has what
#   the provisioners put there) -> kiln build of images/web -> two builds
#   from that image (tests/e2e/data/web-next.json: a new message, and one
#   whose /healthz fails) -> first rollout of 3 -> rollout under load, zero
#   failed requests -> the broken image refused (exit 3), the old fleet
#   serving, zero failed -> kiln rollback under load -> SIGKILL during a
#   rollout, then --resume, under load -> kiln local down leaves no
#   namespace, veth, mount, bridge or process -> kiln status shows the
#   fleet stopped, and a rollout brings it back and terminates the stopped.
#
# Traffic: loopback, kiln's namespaces, and Debian's mirror through the apt
# proxy (images/web installs nginx, uWSGI and Django).

KILN_TEST_LOCAL_SUBNET=${KILN_TEST_LOCAL_SUBNET:-10.232.241.0/24}
KILN_TEST_LOCAL_BRIDGE=${KILN_TEST_LOCAL_BRIDGE:-kilne2e1}
. "$(dirname "$0")/lib-local.sh"
command -v wrk >/dev/null 2>&1 || skip_all "'wrk' is not installed (scripts/bootstrap.sh check)"
SRC=${KILN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=$SRC/tests/e2e/data
. "$SRC/scripts/lib-load.sh"
export LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-4} LOAD_MAX_S=300

LB_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$LB_PORT/
FLEET=$TEST_DIR/fleet.json
cat >"$FLEET" <<EOF
{
  "name": "t0510",
  "provider": "local",
  "image": "web",
  "desired": 3,
  "batch_size": 1,
  "health_timeout_s": 120,
  "health_grace_s": 5,
  "drain_timeout_s": 10,
  "load_balancer": {
    "listen": "127.0.0.1:$LB_PORT",
    "health": {"path": "/healthz", "interval_s": 1, "rise": 2, "fall": 2}
  }
}
EOF
TOTAL_SENT=0

# build LOG ARGS...: kiln build; the version it printed goes to BUILT
build() {
	local log=$1 last
	shift
	"$KILN" build --manifest "$TEST_DIR/manifest.json" "$@" >"$TEST_DIR/$log.out" 2>"$TEST_DIR/$log.err" || {
		tail -30 "$TEST_DIR/$log.err" | sed 's/^/#   /'
		fail "kiln build $*"
	}
	last=$(tail -1 "$TEST_DIR/$log.out")
	[[ $last =~ ^[a-z]+@([0-9]+)\ img-[0-9a-f]{17}$ ]] || fail "kiln build printed '$last'"
	BUILT=${BASH_REMATCH[1]}
}

# no_build_leftovers: a build leaves no instance running and no key pair
no_build_leftovers() {
	"$KILN" local status --json >"$TEST_DIR/st.json" || return 1
	python3 - "$TEST_DIR/st.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
live = [i["id"] for i in s["instances"] if i["state"] not in ("terminated",)
        and not any(t.startswith("kiln:fleet") for t in i.get("tags", {}))]
assert not live, "instances left: %s" % live
EOF
	[ -z "$(ls "$STATE/keys" 2>/dev/null)" ] || { echo "key pairs left: $(ls "$STATE/keys")"; return 1; }
}

# served_version: the version every one of 6 requests through the balancer names
served_version() {
	local i v seen=
	for i in 1 2 3 4 5 6; do
		v=$(curl -fsS -m 10 "$URL" | sed -n 's/.*from image web version \([0-9]*\)\..*/\1/p')
		[ -n "$v" ] || { echo none; return; }
		[ -z "$seen" ] || [ "$seen" = "$v" ] || { echo mixed; return; }
		seen=$v
	done
	echo "$seen"
}

# fleet_is VERSION: exactly 3 live instances, all of web@VERSION, all healthy
fleet_is() {
	"$KILN" status "$FLEET" --json >"$TEST_DIR/fleet.json.out" 2>"$TEST_DIR/fleet.err" || return 1
	# the status is the last line: events (a balancer that restarts, a terminated
	# instance's server forgotten) may come before it
	python3 - "$TEST_DIR/fleet.json.out" "$1" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
live = [i for i in s["instances"] if i["state"] in ("pending", "running", "stopping", "stopped")]
assert len(live) == 3, "%d live instances: %s" % (len(live), [(i["id"], i["state"], i["image"]) for i in live])
for i in live:
    assert i["image"] == "web@" + sys.argv[2], (i["id"], i["image"])
    assert i["health"]["t0510"]["health"] == "healthy", (i["id"], i["health"])
EOF
}

# under_load WANT_RC LOG kiln ARGS...: runs kiln while wrk hits the balancer
under_load() {
	local want=$1 log=$2 rc=0
	shift 2
	load_start "$URL" "$TEST_DIR/$log.wrk"
	"$@" >"$TEST_DIR/$log.out" 2>"$TEST_DIR/$log.err" || rc=$?
	load_stop || fail "wrk reported nothing ($log)"
	TOTAL_SENT=$((TOTAL_SENT + LOAD_SENT))
	if [ "$rc" != "$want" ]; then
		tail -30 "$TEST_DIR/$log.err" | sed 's/^/#   /'
		fail "$log: kiln exited $rc, not $want"
	fi
	[ "$LOAD_SENT" -gt 100 ] || fail "$log: only $LOAD_SENT requests went through"
	if [ "$LOAD_FAILED" = 0 ]; then
		ok "$log: exit $rc, $LOAD_SENT requests under load, none failed"
	else
		fail "$log: $LOAD_FAILED of $LOAD_SENT requests failed ($LOAD_LINE)"
	fi
}

# ---- builds ----
check "kiln local up --subnet $TEST_SUBNET --bridge $TEST_BRIDGE" \
	"$KILN" local up --subnet "$TEST_SUBNET" --bridge "$TEST_BRIDGE"

build small "$DATA/local-small.json" --var greeting=bonjour
[ "$BUILT" = 1 ] && ok "the small template builds small@1 (provider local from the template)" || fail "small@$BUILT"
check "the build left no instance and no key pair" no_build_leftovers
build small2 "$DATA/local-small.json"
[ "$BUILT" = 2 ] && ok "a second build is small@2" || fail "second build: small@$BUILT"
"$KILN" images list small --provider local --json >"$TEST_DIR/images.json" || fail "kiln images list small"
check "kiln images list shows small@2 and small@1, newest first, with kiln's tags" python3 - "$TEST_DIR/images.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
vs = [int(r["version"]) for r in rows]
assert vs == [2, 1], vs
EOF

# what the provisioners did is in the image: an instance of small@1 shows it
ssh-keygen -q -t ed25519 -N '' -C kiln-e2e -f "$TEST_DIR/key" || fail "ssh-keygen"
"$DRIVER" keypair-import t0510 "$TEST_DIR/key.pub" >/dev/null || fail "import a key pair"
SMALL1=$("$KILN" images show small@1 --provider local --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') ||
	fail "kiln images show small@1"
I=$("$DRIVER" launch "$SMALL1" key=t0510) || fail "launch small@1"
IP=$("$DRIVER" wait-running timeout=120 "$I" | awk '{print $2}') || fail "$I running"
check "an instance of small@1 has the file provisioner's file and the shell's output" \
	on "$IP" 'grep -qx "bonjour 1" /etc/small-release && grep -q "file provisioner" /opt/small/hello.txt'
check "and a host key of its own (none was baked into the image)" \
	on "$IP" 'test -s /etc/ssh/ssh_host_ed25519_key && ! test -e /etc/ssh/ssh_host_rsa_key'
"$DRIVER" terminate "$I" >/dev/null || fail "terminate $I"
"$DRIVER" keypair-delete t0510 >/dev/null || fail "delete the key pair"

build web1 "$SRC/images/web/web.json" --provider local
[ "$BUILT" = 1 ] && ok "images/web builds web@1 on the local provider" || fail "web@$BUILT"
check "the build left no instance and no key pair" no_build_leftovers
build web2 "$DATA/web-next.json" --var "message=second release"
[ "$BUILT" = 2 ] && ok "web@2 builds from web@1 (a layer over its layers)" || fail "web@$BUILT"
build web3 "$DATA/web-next.json" --var "healthz_fail=broken on purpose"
[ "$BUILT" = 3 ] && ok "web@3, broken on purpose, builds (its page works; its /healthz does not)" || fail "web@$BUILT"

# ---- rollouts ----
"$KILN" rollout "$FLEET" --image web@1 >"$TEST_DIR/ro1.out" 2>"$TEST_DIR/ro1.err" || {
	tail -30 "$TEST_DIR/ro1.err" | sed 's/^/#   /'
	fail "first rollout of web@1"
}
ok "the first rollout puts 3 instances of web@1 behind the balancer"
check "3 healthy instances of web@1" fleet_is 1
[ "$(served_version)" = 1 ] && ok "the balancer serves web@1" || fail "the balancer serves '$(served_version)'"

under_load 0 rollout-v2 "$KILN" rollout "$FLEET" --image web@2
check "3 healthy instances of web@2, the old ones gone" fleet_is 2
[ "$(served_version)" = 2 ] && curl -fsS "$URL" | grep -q "second release" &&
	ok "the balancer serves web@2 and its message" || fail "after the rollout: '$(served_version)'"

under_load 3 rollout-v3 "$KILN" rollout "$FLEET" --image web@3
grep -q "Target.ResponseCodeMismatch" "$TEST_DIR/rollout-v3.err" && grep -q "HTTP 500" "$TEST_DIR/rollout-v3.err" &&
	ok "the refusal names the failing health check (HTTP 500)" || fail "no health reason in the error"
check "the old fleet serves: 3 healthy instances of web@2, none of web@3 left" fleet_is 2
[ "$(served_version)" = 2 ] && ok "the balancer still serves web@2" || fail "after the refusal: '$(served_version)'"

under_load 0 rollback "$KILN" rollback "$FLEET"
check "the rollback went back to web@1, the image before web@2" fleet_is 1
[ "$(served_version)" = 1 ] && ok "the balancer serves web@1" || fail "after the rollback: '$(served_version)'"

# ---- SIGKILL during a rollout, then --resume, under load throughout ----
ls "$KILN_STATE_DIR"/rollouts/t0510/ >"$TEST_DIR/journals.before"
load_start "$URL" "$TEST_DIR/kill.wrk"
"$KILN" rollout "$FLEET" --image web@2 >"$TEST_DIR/killed.out" 2>"$TEST_DIR/killed.err" &
KPID=$!
# kill it once its first new instance is registered with the balancer (its journal says so)
registered() {
	local j
	for j in $(ls "$KILN_STATE_DIR"/rollouts/t0510/ | grep '\.journal$' | grep -vxFf "$TEST_DIR/journals.before"); do
		grep -q '"op":"register","stage":"after"' "$KILN_STATE_DIR/rollouts/t0510/$j" && return 0
	done
	return 1
}
for _ in $(seq 600); do
	registered && break
	kill -0 "$KPID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$KPID" 2>/dev/null || { sed 's/^/#   /' "$TEST_DIR/killed.err"; fail "the rollout ended before it could be killed"; }
kill -9 "$KPID"
wait "$KPID" 2>/dev/null
ok "kill -9 of kiln rollout once a new instance was registered"
"$KILN" status "$FLEET" >"$TEST_DIR/status-killed.out" 2>&1
grep -qi "interrupted" "$TEST_DIR/status-killed.out" && ok "kiln status shows the interrupted rollout" ||
	{ sed 's/^/#   /' "$TEST_DIR/status-killed.out"; fail "kiln status does not show it"; }
rc=0
"$KILN" rollout "$FLEET" --resume >"$TEST_DIR/resume.out" 2>"$TEST_DIR/resume.err" || rc=$?
load_stop || fail "wrk reported nothing (kill and resume)"
TOTAL_SENT=$((TOTAL_SENT + LOAD_SENT))
[ $rc = 0 ] && ok "kiln rollout --resume finishes it" || { tail -30 "$TEST_DIR/resume.err" | sed 's/^/#   /'; fail "--resume exited $rc"; }
[ "$LOAD_FAILED" = 0 ] && ok "kill -9 and resume under load: $LOAD_SENT requests, none failed" ||
	fail "kill and resume: $LOAD_FAILED of $LOAD_SENT requests failed ($LOAD_LINE)"
check "3 healthy instances of web@2, nothing launched twice or left behind" fleet_is 2
[ "$(served_version)" = 2 ] && ok "the balancer serves web@2" || fail "after the resume: '$(served_version)'"
say "$TOTAL_SENT requests through the balancer during the rollouts, none failed"

# ---- kiln local down leaves nothing ----
"$KILN" local status --json >"$TEST_DIR/before-down.json" || fail "kiln local status"
PIDS=$(python3 - "$TEST_DIR/before-down.json" "$STATE" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
pids = [s["apt_proxy"].get("pid")]
pids += [b.get("pid") for b in s.get("balancers", [])]
print(" ".join(str(p) for p in pids if p))
EOF
)
for i in $(ls "$STATE/instances"); do
	[ -f "$STATE/instances/$i/nspawn.pid" ] && PIDS="$PIDS $(cat "$STATE/instances/$i/nspawn.pid")"
done
IDS=$(ls "$STATE/instances")
[ -n "$(live_pids $PIDS)" ] && ok "before down: HAProxy, apt-cacher-ng and containers run ($(live_pids $PIDS | wc -l) processes)" ||
	fail "no process found to check"
check "kiln local down" "$KILN" local down
left=
for i in $IDS; do
	[ -e "/run/netns/kiln-$i" ] && left="$left netns:kiln-$i"
	ip link show "kiln${i: -11}" >/dev/null 2>&1 && left="$left veth:kiln${i: -11}"
done
[ -z "$left" ] && ok "no network namespace or veth left" || fail "left:$left"
[ -z "$(grep -F " $STATE/" /proc/self/mountinfo)" ] && ok "no mount left" || fail "mounts left: $(grep -F " $STATE/" /proc/self/mountinfo)"
! ip link show "$TEST_BRIDGE" >/dev/null 2>&1 && ok "no bridge left" || fail "bridge $TEST_BRIDGE left"
[ -z "$(live_pids $PIDS)" ] && ok "no process left (HAProxy, nspawn, apt-cacher-ng)" || fail "processes left: $(live_pids $PIDS)"
left=$(for p in /proc/[0-9]*; do r=$(readlink "$p/root" 2>/dev/null) && case "$r" in "$STATE"/*) echo "${p#/proc/}" ;; esac; done)
[ -z "$left" ] && ok "no process runs inside a root under the state dir" || fail "processes rooted in $STATE: $left"
! curl -s -o /dev/null -m 2 "$URL" && ok "nothing listens on the balancer's port" || fail "$URL still answers"

# ---- after down the fleet's instances are stopped: status says so, a rollout replaces them ----
"$KILN" status "$FLEET" --json >"$TEST_DIR/status-down.json" 2>"$TEST_DIR/status-down.err" ||
	{ sed 's/^/#   /' "$TEST_DIR/status-down.err"; fail "kiln status after down"; }
# (the status is the last line: bringing the balancer back up is an event before it)
check "kiln status shows the fleet's 3 instances stopped, none serving" python3 - "$TEST_DIR/status-down.json" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
states = sorted(i["state"] for i in s["instances"])
assert states == ["stopped"] * 3, states
assert s["stopped"] == 3 and s["serving"] == 0, (s["stopped"], s["serving"])
EOF
STOPPED=$(python3 -c 'import json, sys; print(" ".join(i["id"] for i in json.loads(open(sys.argv[1]).read().splitlines()[-1])["instances"]))' \
	"$TEST_DIR/status-down.json")
"$KILN" local status --json >"$TEST_DIR/local-down.json" || fail "kiln local status after down"
check "kiln local status: the balancer lists the stopped instances as unused" \
	python3 - "$TEST_DIR/local-down.json" "$STOPPED" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
stopped = sys.argv[2].split()
servers = {x["id"]: x for b in s["balancers"] for x in b["servers"]}
assert len(stopped) == 3, stopped
for i in stopped:
    assert i in servers and servers[i]["health"] == "unused", (i, servers.get(i))
EOF
"$KILN" rollout "$FLEET" --image web@1 >"$TEST_DIR/after-down.out" 2>"$TEST_DIR/after-down.err" || {
	tail -30 "$TEST_DIR/after-down.err" | sed 's/^/#   /'
	fail "kiln rollout after kiln local down"
}
ok "a rollout after kiln local down brings the fleet back (the local cloud comes up by itself)"
check "3 healthy instances of web@1, the 3 stopped ones terminated" fleet_is 1
left=
for i in $STOPPED; do
	grep -q "\"$i\"" "$TEST_DIR/fleet.json.out" && left="$left $i"
done
[ -n "$STOPPED" ] && [ -z "$left" ] && ok "none of the stopped instances is left in the fleet" || fail "left:$left"
grep -q "restoring fleet .* to  (" "$TEST_DIR"/*.err && fail "a restore message names no image" ||
	ok "no restore message names an empty image"
[ "$(served_version)" = 1 ] && ok "the balancer serves web@1 again" || fail "after down and rollout: '$(served_version)'"

printf '1..%d\n' "$test_count"
