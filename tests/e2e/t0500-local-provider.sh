#!/bin/bash
# t0500: the local provider end to end, with real containers, a real HAProxy
# and load through it, as the engines will drive it (kiln-local-driver calls
# the provider's operations one by one):
#
#   up (base image, bridge, apt proxy) -> launch from debian-12 with a key ->
#   SSH in, systemd running, apt-get through the proxy -> stop -> image ->
#   two instances from the image (own host keys and addresses, package there)
#   -> balancer: initial -> healthy, unhealthy, draining -> unused under load
#   with zero failed requests -> terminate -> prune safety -> down leaves
#   nothing -> kill -9 of everything, then up again works.
#
# Traffic: loopback, the namespaces kiln creates, and Debian's mirror (base
# image, apt proxy).

. "$(dirname "$0")/lib-local.sh"

LB_PORT=${KILN_TEST_LB_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
LB="web,127.0.0.1:$LB_PORT,/healthz,1,2,2,8000"
URL=http://127.0.0.1:$LB_PORT

# ---- up ----
say "kiln local up --subnet $TEST_SUBNET --bridge $TEST_BRIDGE (base cache: $KILN_LOCAL_BASE_CACHE)"
check "kiln local up builds or copies the base and starts the bridge and apt proxy" \
	"$KILN" local up --subnet "$TEST_SUBNET" --bridge "$TEST_BRIDGE"
BRIDGE_IP=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])" "$TEST_SUBNET")
check "the bridge holds the host's address" sh -c "ip -4 -o addr show dev $TEST_BRIDGE | grep -q ' $BRIDGE_IP/'"
check "a second up is a no-op that succeeds" "$KILN" local up
"$KILN" local status --json >"$TEST_DIR/status.json" || fail "kiln local status --json"
check "status names the bridge, the running apt proxy and the base" python3 - "$TEST_DIR/status.json" "$TEST_BRIDGE" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["network"]["bridge"] == sys.argv[2] and s["network"]["up"], s["network"]
assert s["apt_proxy"]["running"] and s["apt_proxy"]["pid"], s["apt_proxy"]
assert s["base"]["present"], s["base"]
assert s["names"]["bridge"] == sys.argv[2]
EOF
ACNG_PID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['apt_proxy']['pid'])" "$TEST_DIR/status.json")

# a second state dir may not take a subnet this host already uses
out=$(KILN_STATE_DIR=$TEST_DIR/other "$KILN" local up --subnet "$TEST_SUBNET" --bridge kilne2eX --no-base 2>&1)
rc=$?
KILN_STATE_DIR=$TEST_DIR/other "$KILN" local down --purge >/dev/null 2>&1
if [ $rc = 2 ] && printf '%s' "$out" | grep -q "already in use on this host"; then
	ok "a subnet in use on the host is refused with a clear message (exit 2)"
else
	printf '%s\n' "$out" | sed 's/^/#   /'
	fail "a subnet in use on the host is refused (exit $rc)"
fi

# ---- an instance from the base ----
ssh-keygen -q -t ed25519 -N '' -C kiln-e2e -f "$TEST_DIR/key" || fail "ssh-keygen"
check "import the key pair" "$DRIVER" keypair-import e2e "$TEST_DIR/key.pub" tag:kiln:build-id=e2e
check "importing it again is recognised, not a conflict" "$DRIVER" keypair-import e2e "$TEST_DIR/key.pub"
I1=$("$DRIVER" launch debian-12 key=e2e token=e2e-first tag:kiln:build-id=e2e tag:Name=first) || fail "launch from debian-12"
[ "$(printf '%s\n' "$I1" | wc -l)" = 1 ] && [[ $I1 =~ ^i-[0-9a-f]{17}$ ]] || fail "launch returns one EC2-like id (got '$I1')"
ok "launched $I1 from debian-12"
again=$("$DRIVER" launch debian-12 key=e2e token=e2e-first) || fail "launch again with the same token"
[ "$again" = "$I1" ] && ok "the same client token returns the same instance" || fail "token gave '$again', not '$I1'"
IP1=$("$DRIVER" wait-running timeout=120 "$I1" | awk '{print $2}') || fail "$I1 running"
[ -n "$IP1" ] && ok "$I1 is running at $IP1" || fail "$I1 has no address"
check "SSH with the key pair's key: systemd is running (not degraded)" \
	on "$IP1" 'systemctl is-system-running --wait'
check "apt-get installs a package through the apt proxy" \
	on "$IP1" 'apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >/dev/null && hello'
check "the apt proxy cached it" sh -c "find '$STATE/apt-cache' -name 'hello_*.deb' | grep -q ."
on "$IP1" 'echo image-v1 > /etc/kiln-e2e-marker' || fail "write a marker"
KEY1=$(on "$IP1" 'cat /etc/ssh/ssh_host_ed25519_key.pub' | awk '{print $2}')
"$DRIVER" console "$I1" >"$TEST_DIR/console" || fail "console output"
grep -q 'BEGIN SSH HOST KEY FINGERPRINTS' "$TEST_DIR/console" && [ -n "$KEY1" ] && grep -qF "$KEY1" "$TEST_DIR/console" &&
	ok "the console shows the host key fingerprints and keys" || fail "no host keys on the console"

# ---- stop, image ----
check "stop" "$DRIVER" stop "$I1"
[ "$(inst_field "$I1" 2)" = stopped ] && ok "$I1 is stopped" || fail "$I1 is $(inst_field "$I1" 2)"
[ -z "$(grep " $STATE/instances/$I1/rootfs " /proc/self/mountinfo)" ] && ok "its root is unmounted" || fail "rootfs still mounted"
IMG=$("$DRIVER" image-create "$I1" e2e-v1 tag:kiln:image=e2e tag:kiln:version=1) || fail "image-create"
[[ $IMG =~ ^img-[0-9a-f]{17}$ ]] && ok "image $IMG is available" || fail "image id '$IMG'"
LAYER=$("$DRIVER" images owner=self | awk -v i="$IMG" '$1 == i {print $6}')
[ -d "$STATE/layers/$LAYER" ] && ok "its layer $LAYER is stored" || fail "no layer for $IMG"
for f in etc/ssh/ssh_host_ed25519_key root/.ssh/authorized_keys etc/apt/apt.conf.d/00kiln-proxy; do
	[ -e "$STATE/layers/$LAYER/$f" ] && fail "the sealed layer still holds $f"
done
[ ! -s "$STATE/layers/$LAYER/etc/machine-id" ] && ok "the layer holds no host keys, authorized keys, proxy config, machine id" || fail "machine-id not empty"
out=$("$DRIVER" image-create "$I1" e2e-v1 2>&1) && fail "a second image of the same name was accepted"
ok "a second image named e2e-v1 is refused"

# ---- two instances from the image, serving HTTP ----
cat >"$TEST_DIR/user-data" <<'EOF'
#!/bin/sh
# a tiny app: / says who serves, /slow takes 4 s, /healthz fails while /run/unhealthy exists
cat >/opt/app.py <<'PY'
import http.server, os, socket, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        code = 200
        if self.path == "/healthz" and os.path.exists("/run/unhealthy"):
            code = 500
        elif self.path.startswith("/slow"):
            time.sleep(4)
        body = (socket.gethostname() + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
# python's default backlog of 5 drops SYNs under load (1 s retransmits): not what is tested
http.server.ThreadingHTTPServer.request_queue_size = 256
http.server.ThreadingHTTPServer(("", 8000), H).serve_forever()
PY
cat >/etc/systemd/system/app.service <<'UNIT'
[Service]
ExecStart=/usr/bin/python3 /opt/app.py
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --no-block --now app.service
EOF
IDS=$("$DRIVER" launch "$IMG" key=e2e count=2 token=e2e-pair user-data="$TEST_DIR/user-data" tag:kiln:fleet=e2e) ||
	fail "launch two from $IMG"
set -- $IDS
A=$1 B=$2
[ $# = 2 ] && ok "launched $A and $B from $IMG" || fail "launch count=2 gave '$IDS'"
"$DRIVER" wait-running timeout=120 "$A" "$B" >"$TEST_DIR/running" || fail "$A and $B running"
IPA=$(awk -v i="$A" '$1 == i {print $2}' "$TEST_DIR/running")
IPB=$(awk -v i="$B" '$1 == i {print $2}' "$TEST_DIR/running")
[ -n "$IPA" ] && [ -n "$IPB" ] && [ "$IPA" != "$IPB" ] && ok "they have their own addresses ($IPA, $IPB)" || fail "addresses '$IPA' '$IPB'"
KA=$(on "$IPA" 'cat /etc/ssh/ssh_host_ed25519_key.pub' | awk '{print $2}')
KB=$(on "$IPB" 'cat /etc/ssh/ssh_host_ed25519_key.pub' | awk '{print $2}')
[ -n "$KA" ] && [ "$KA" != "$KB" ] && [ "$KA" != "$KEY1" ] && [ "$KB" != "$KEY1" ] &&
	ok "each has its own SSH host key" || fail "host keys are shared ('$KA' '$KB' '$KEY1')"
MA=$(on "$IPA" 'cat /etc/machine-id')
MB=$(on "$IPB" 'cat /etc/machine-id')
[ -n "$MA" ] && [ "$MA" != "$MB" ] && ok "and its own machine id" || fail "machine ids '$MA' '$MB'"
check "the package installed before the image is there" on "$IPA" 'hello && grep -q image-v1 /etc/kiln-e2e-marker'
check "user data ran once and started the app" on "$IPB" \
	'for i in $(seq 1 100); do curl -sf http://127.0.0.1:8000/healthz >/dev/null && exit 0; sleep 0.2; done; exit 1'
check "resources_find sees the pair by tag" sh -c "[ \$('$DRIVER' resources tag:kiln:fleet=e2e | grep -c '^instance ') = 2 ]"

# ---- the balancer ----
check "lb_open starts HAProxy on 127.0.0.1:$LB_PORT" "$DRIVER" lb-open "$LB"
on "$IPA" 'systemctl is-active -q app || sleep 2; systemctl stop app' || fail "stop the app on $A"
check "register both" "$DRIVER" lb-register "$LB" "$A" "$B"
h=$("$DRIVER" lb-health "$LB" "$A")
case "$h" in *" initial "*) ok "right after registering: initial ($h)" ;; *) fail "after registering: '$h'" ;; esac
sleep 2.5
h=$("$DRIVER" lb-health "$LB" "$A")
case "$h" in *" initial "*L4CON*) ok "an app not answering (L4) stays initial: $h" ;; *) fail "app down: '$h'" ;; esac
t=$("$DRIVER" lb-wait "$LB" "$B" healthy timeout=30) || fail "$B healthy"
ok "$B healthy after ${t}s (rise 2 x 1 s)"
on "$IPA" 'systemctl start app' || fail "start the app on $A"
t=$("$DRIVER" lb-wait "$LB" "$A" healthy timeout=30) || fail "$A healthy"
ok "$A healthy ${t}s after its app started"
served=$(for i in 1 2 3 4 5 6; do curl -sf "$URL/"; done | sort -u | wc -l)
[ "$served" = 2 ] && ok "the balancer serves from both" || fail "served by $served instances"

on "$IPB" 'touch /run/unhealthy' || fail "make $B unhealthy"
t=$("$DRIVER" lb-wait "$LB" "$B" unhealthy timeout=30) || fail "$B unhealthy"
h=$("$DRIVER" lb-health "$LB" "$B")
case "$h" in *ResponseCodeMismatch*500*) ok "$B unhealthy after ${t}s: $h" ;; *) fail "unhealthy reason: '$h'" ;; esac
served=$(for i in 1 2 3 4; do curl -sf "$URL/"; done | sort -u)
[ "$served" = "kiln-$A" ] && ok "traffic goes to $A only" || fail "served by '$served'"
on "$IPB" 'rm /run/unhealthy' || fail "heal $B"
check "$B healthy again" "$DRIVER" lb-wait "$LB" "$B" healthy timeout=30

# HAProxy dies: the next operation brings it back with its servers and their states
kill -9 "$(cat "$STATE/lb/web/haproxy.pid")"
h=$("$DRIVER" lb-health "$LB")
[ "$(printf '%s\n' "$h" | grep -c ' healthy ')" = 2 ] && ok "after kill -9 of HAProxy both are healthy at once" ||
	fail "after HAProxy's restart: $h"

# ---- deregister and re-register under load: zero failed requests ----
LOAD_S=40
if command -v wrk >/dev/null 2>&1; then
	# a slow answer is not a failure: wrk's own 2 s timeout would count it as one
	wrk -t2 -c8 -d${LOAD_S}s --timeout 10s "$URL/" >"$TEST_DIR/load.out" 2>&1 &
else
	(ok=0 bad=0; end=$((SECONDS + LOAD_S)); while [ $SECONDS -lt $end ]; do
		if curl -sf -o /dev/null -m 5 "$URL/"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
	done; echo "curl loop: $ok ok, $bad failed"; [ $bad = 0 ] || echo "Socket errors: $bad") >"$TEST_DIR/load.out" 2>&1 &
fi
LOAD=$!
sleep 1
# slow requests in flight: a draining server must finish them
for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\n' "$URL/slow" >"$TEST_DIR/slow.$i" & done
sleep 0.5
check "deregister $A" "$DRIVER" lb-deregister "$LB" "$A"
h=$("$DRIVER" lb-health "$LB" "$A")
case "$h" in *" draining "*) ok "with requests in flight $A is draining" ;; *) fail "after deregistering: '$h'" ;; esac
t=$("$DRIVER" lb-wait "$LB" "$A" unused timeout=40) || fail "$A drained"
ok "$A drained and removed after ${t}s"
wait $(jobs -p | grep -v "^$LOAD\$") 2>/dev/null
[ "$(cat "$TEST_DIR"/slow.* | sort -u)" = 200 ] && ok "every slow request finished with 200" ||
	fail "slow requests: $(cat "$TEST_DIR"/slow.* | tr '\n' ' ')"
! grep -q "server $A " "$STATE/lb/web/haproxy.cfg" && ok "the config no longer lists $A" || fail "$A still in haproxy.cfg"
check "register $A again" "$DRIVER" lb-register "$LB" "$A"
check "$A healthy again" "$DRIVER" lb-wait "$LB" "$A" healthy timeout=30
check "deregister $B" "$DRIVER" lb-deregister "$LB" "$B"
check "$B drained" "$DRIVER" lb-wait "$LB" "$B" unused timeout=40
check "register $B again" "$DRIVER" lb-register "$LB" "$B"
check "$B healthy again" "$DRIVER" lb-wait "$LB" "$B" healthy timeout=30
wait $LOAD
sed 's/^/#   /' "$TEST_DIR/load.out"
if grep -qE "Socket errors|Non-2xx" "$TEST_DIR/load.out" || ! grep -qE "requests in|curl loop" "$TEST_DIR/load.out"; then
	fail "requests failed while servers were drained, removed and added"
fi
ok "zero failed requests while servers were drained, removed and added ($(grep -oE '[0-9]+ requests in [0-9.]+s' "$TEST_DIR/load.out" || grep -o 'curl loop.*' "$TEST_DIR/load.out"))"

# ---- records ----
check "record create" "$DRIVER" record-create /kiln/images/e2e/versions/1 b-1
out=$("$DRIVER" record-create /kiln/images/e2e/versions/1 b-2 2>&1) && fail "a record was created twice"
ok "a record is created only once"

# ---- prune safety, terminate ----
check "delete the image while $A and $B run from it" "$DRIVER" image-delete "$IMG"
[ -d "$STATE/layers/$LAYER" ] && ok "its layer stays: running instances stand on it" || fail "layer removed under running instances"
NSPAWN_PIDS=$(cat "$STATE/instances/$A/nspawn.pid" "$STATE/instances/$B/nspawn.pid")
check "terminate all" "$DRIVER" terminate "$A" "$B" "$I1"
for i in "$A" "$B" "$I1"; do
	[ "$(inst_field "$i" 2)" = terminated ] || fail "$i is $(inst_field "$i" 2)"
	[ -e "/run/netns/kiln-$i" ] && fail "namespace kiln-$i remains"
done
ok "all terminated, their namespaces gone"
[ ! -d "$STATE/layers/$LAYER" ] && ok "now unused, the layer is pruned" || fail "layer $LAYER left behind"
h=$("$DRIVER" lb-health "$LB" "$A")
case "$h" in *" unused "*) ok "a terminated target is unused ($h)" ;; *) fail "terminated target: '$h'" ;; esac
[ -z "$(live_pids $NSPAWN_PIDS)" ] && ok "their containers are gone" || fail "nspawn still running: $(live_pids $NSPAWN_PIDS)"

# ---- concurrent launches, then down leaves nothing ----
"$DRIVER" launch debian-12 key=e2e count=2 >"$TEST_DIR/p1" &
P1=$!
"$DRIVER" launch debian-12 key=e2e count=2 >"$TEST_DIR/p2" &
P2=$!
wait $P1 && wait $P2 || fail "two launches at once"
PAR=$(cat "$TEST_DIR/p1" "$TEST_DIR/p2")
"$DRIVER" wait-running timeout=120 $PAR >"$TEST_DIR/par" || fail "the four running"
[ "$(awk '{print $2}' "$TEST_DIR/par" | sort -u | wc -l)" = 4 ] && ok "two launches at once: four instances, four addresses" ||
	fail "addresses: $(cat "$TEST_DIR/par")"
I2=${PAR%%$'\n'*}
HA_PID=$(cat "$STATE/lb/web/haproxy.pid")
PIDS="$HA_PID $ACNG_PID"
for i in $PAR; do PIDS="$PIDS $(cat "$STATE/instances/$i/nspawn.pid")"; done
check "kiln local down" "$KILN" local down
for i in $PAR; do
	[ -e "/run/netns/kiln-$i" ] && fail "namespace kiln-$i left"
	ip link show "kiln${i: -11}" >/dev/null 2>&1 && fail "veth kiln${i: -11} left"
	[ "$(inst_field "$i" 2)" = stopped ] || fail "$i is $(inst_field "$i" 2)"
done
ok "no namespace or veth left; the instances are stopped, kept"
[ -z "$(grep -F " $STATE/" /proc/self/mountinfo)" ] && ok "no mount left" || fail "mounts left: $(grep -F " $STATE/" /proc/self/mountinfo)"
! ip link show "$TEST_BRIDGE" >/dev/null 2>&1 && ok "no bridge left" || fail "bridge $TEST_BRIDGE left"
[ -z "$(live_pids $PIDS)" ] && ok "no process left (HAProxy, nspawn, apt-cacher-ng)" || fail "processes left: $(live_pids $PIDS)"
[ -d "$STATE/base/debian-12" ] && [ -d "$STATE/apt-cache" ] && ok "the base and the apt cache are kept" || fail "down removed the base or cache"

# ---- kill -9 everything, then up again ----
check "up again" "$KILN" local up
I3=$("$DRIVER" launch debian-12 key=e2e) || fail "launch after up"
"$DRIVER" wait-running timeout=120 "$I3" >/dev/null || fail "$I3 running"
check "the balancer comes back" "$DRIVER" lb-open "$LB"
kill -9 "$(cat "$STATE/instances/$I3/nspawn.pid")" "$(cat "$STATE/lb/web/haproxy.pid")" "$(cat "$STATE/apt-cacher-ng/kiln.pid")"
sleep 0.5
check "kiln local up after kill -9 of nspawn, HAProxy and apt-cacher-ng" "$KILN" local up
[ "$(inst_field "$I3" 2)" = stopped ] && ok "the killed container is recorded as stopped ($("$DRIVER" describe "$I3" | cut -d' ' -f5-))" ||
	fail "$I3 is $(inst_field "$I3" 2)"
[ -z "$(grep -F " $STATE/instances/$I3/" /proc/self/mountinfo)" ] && [ ! -e "/run/netns/kiln-$I3" ] &&
	ok "its mount and namespace are cleaned up" || fail "leftovers of $I3"
check "the apt proxy answers again" curl -s -o /dev/null -m 5 "http://$BRIDGE_IP:3142/"
I4=$("$DRIVER" launch debian-12 key=e2e) || fail "launch after the repair"
check "a new instance runs after the repair" "$DRIVER" wait-running timeout=120 "$I4"
check "terminate" "$DRIVER" terminate "$I3" "$I4"
check "kiln local down --purge" "$KILN" local down --purge
[ ! -e "$STATE" ] && ok "--purge removed all local state" || fail "$STATE remains"
[ -f "$KILN_LOCAL_BASE_CACHE/debian-12-r$BASE_RECIPE/base.json" ] && ok "the base image cache stays for the next suite" || fail "no base cache"

printf '1..%d\n' "$test_count"
