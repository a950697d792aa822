#!/bin/bash
# bench/local-flow.sh: figures of kiln's whole flow on the local provider.
#
#   bench/local-flow.sh [BUILD_DIR]     (default build/release; needs root)
#
# - instance start to SSH-ready: a web image's instance launched, then an SSH
#   login with the key pair's key polled every 50 ms (the driver's own clock)
# - image creation: `kiln build images/web/web.json`, the time from "creating
#   image" to "available" and the new layer's size (du), plus the whole build
# - a 3-instance rollout (batches of 1, checks every 1 s, rise 2): its wall
#   time beside its critical path, the least that health checks and draining
#   need: per batch rise x interval, plus the drains as measured (deregistered
#   to drained); the final termination of the old instances is shown apart.
#   Per batch: launch -> running (as the engine saw it), registered -> healthy.
#   Run idle and under wrk (scripts/lib-load.sh): requests sent and failed.
# - with KILN_BENCH_TRACE=1, where each batch's time goes: the engine's events
#   beside what bench/local-flow-trace.py sees from outside every 100 ms
#   (sshd and the application answering, HAProxy's server states)
#
# Uses its own state dir, subnet, bridge and port; takes everything down at
# the end. The base image comes from $KILN_LOCAL_BASE_CACHE (default
# BUILD_DIR/local-base-cache, else build/asan/local-base-cache).
#   KILN_BENCH_RUNS   rollouts per mode (default 3), SSH-ready runs (x2)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
KILN=$(pwd)/$BUILD/cli/kiln
DRIVER=$(pwd)/build/asan/tests/kiln-local-driver
[ -x "$DRIVER" ] || DRIVER=$(pwd)/$BUILD/tests/kiln-local-driver
[ -x "$KILN" ] && [ -x "$DRIVER" ] || { echo "need $KILN and a kiln-local-driver (make unit builds it)" >&2; exit 2; }
RUNS=${KILN_BENCH_RUNS:-3}
if [ -z "${KILN_LOCAL_BASE_CACHE:-}" ]; then
	KILN_LOCAL_BASE_CACHE=$(pwd)/$BUILD/local-base-cache
	[ -d "$KILN_LOCAL_BASE_CACHE" ] || KILN_LOCAL_BASE_CACHE=$(pwd)/build/asan/local-base-cache
fi
export KILN_LOCAL_BASE_CACHE
export KILN_LOCAL_SUBNET=${KILN_BENCH_LOCAL_SUBNET:-10.232.242.0/24} KILN_LOCAL_BRIDGE=kilnbench1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
DIR=$(mktemp -d /tmp/kiln-bench-flow.XXXXXX)
export KILN_STATE_DIR=$DIR/state
. scripts/lib-load.sh
# (set -e holds in the trap too: nothing in it may fail before the cleanup)
trap 'load_kill; [ -z "${TRACE_PID:-}" ] || kill "$TRACE_PID" 2>/dev/null || true; "$KILN" local down --purge >/dev/null 2>&1; rm -rf "$DIR"' EXIT

ms() { echo $(( $(date +%s%N) / 1000000 )); }
on() {
	ssh -i "$DIR/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
		-o LogLevel=ERROR -o ConnectTimeout=2 "root@$1" "${@:2}"
}
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {printf "min %s, median %s, max %s (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kiln local up (base from $KILN_LOCAL_BASE_CACHE or mmdebstrap)..."
"$KILN" local up >/dev/null 2>&1

# ---- image creation (web) ----
echo
echo "kiln build images/web/web.json --provider local:"
for v in 1 2; do
	"$KILN" build images/web/web.json --provider local --manifest "$DIR/manifest.json" --json \
		--var "message=bench $v" >"$DIR/build$v.json" 2>/dev/null
	python3 - "$DIR/build$v.json" "$KILN_STATE_DIR/local/layers" <<'EOF'
import datetime, json, os, re, subprocess, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
t = lambda e: datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
start = t(evs[0])
creating = next(e for e in evs if e.get("message", "").startswith("creating image"))
made = next(e for e in evs if re.match(r"created image '.*layer '", e.get("message", "")))
avail = next(e for e in evs if e.get("message", "").endswith("is available"))
res = evs[-1]
layer = re.search(r"layer '([^']+)'", made["message"]).group(1)
du = int(subprocess.run(["du", "-sb", os.path.join(sys.argv[2], layer)], capture_output=True, text=True).stdout.split()[0])
print("  web@%s: build %.1f s; image creation %.2f s (stop to available: %.2f s); layer %s %.1f MiB"
      % (res.get("version"), t(evs[-1]) - start if "time" in res else t(evs[-2]) - start,
         t(avail) - t(creating), t(avail) - t(next(e for e in evs if e.get("message", "").startswith("stopping"))),
         layer, du / 1048576))
EOF
done

# ---- instance start to SSH-ready ----
ssh-keygen -q -t ed25519 -N '' -f "$DIR/key"
"$DRIVER" keypair-import bench "$DIR/key.pub" >/dev/null
WEB1=$("$KILN" images show web@1 --provider local --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo
echo "instance start to SSH-ready (web@1, $((RUNS * 2)) runs, one at a time):"
for i in $(seq 1 $((RUNS * 2))); do
	t0=$(ms)
	id=$("$DRIVER" launch "$WEB1" key=bench)
	ip=$("$DRIVER" describe "$id" | awk '{print $3}')
	until on "$ip" true 2>/dev/null; do sleep 0.05; done
	echo $(( $(ms) - t0 )) >>"$DIR/ssh"
	"$DRIVER" terminate "$id" >/dev/null
done
echo "  SSH-ready, ms: $(stats <"$DIR/ssh")"

# ---- rollouts ----
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/
cat >"$DIR/fleet.json" <<EOF
{"name": "bench", "provider": "local", "image": "web", "desired": 3, "batch_size": 1,
 "health_timeout_s": 120, "health_grace_s": 10, "drain_timeout_s": 10,
 "load_balancer": {"listen": "127.0.0.1:$PORT",
                   "health": {"path": "/healthz", "interval_s": 1, "rise": 2, "fall": 2}}}
EOF
"$KILN" rollout "$DIR/fleet.json" --image web@1 >/dev/null 2>&1
cur=1

analyse() { # JSON_EVENTS: one line of figures
	python3 - "$1" <<'EOF'
import datetime, json, re, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and '"time"' in l]
t = lambda e: datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
msg = lambda e: e.get("message", "")
start, end = t(evs[0]), t(evs[-1])
rise, interval = 2, 1
batches, cur = [], None
for e in evs:
    m = msg(e)
    if re.match(r"batch \d+/\d+: launching", m):
        cur = {"start": t(e)}; batches.append(cur)
    elif cur is None:
        continue
    elif e["event"] == "instance" and e.get("state") == "running" and "running" not in cur:
        cur["running"] = t(e)
    elif e["event"] == "resource" and "registered with" in m and "registered" not in cur:
        cur["registered"] = t(e)
    elif e["event"] == "health" and e.get("health") == "healthy" and "healthy" not in cur:
        cur["healthy"] = t(e)
    elif "draining '" in m:
        cur["draining"] = t(e)
    elif "drained and removed" in m or "drain timeout" in m:
        cur["drained"] = t(e)
    elif m.startswith("terminating"):
        cur["end"] = t(e); term = t(e)
for i, b in enumerate(batches):
    b.setdefault("end", batches[i + 1]["start"] if i + 1 < len(batches) else end)
drain = sum(b.get("drained", 0) - b.get("draining", 0) for b in batches)
critical = len(batches) * rise * interval + drain
body = batches[-1]["end"] - start
per = [b["end"] - b["start"] for b in batches]
print("wall %.1f s = batches %.1f s + final termination %.1f s; critical path %.1f s (%d x %d x %d s + drains %.2f s); "
      "over it per batch %.1f s; per batch %s; launch->running %s; registered->healthy %s"
      % (end - start, body, end - body - start, critical, len(batches), rise, interval, drain,
         (body - critical) / len(batches), "/".join("%.1f" % p for p in per),
         "/".join("%.1f" % (b["running"] - b["start"]) for b in batches),
         "/".join("%.1f" % (b["healthy"] - b["registered"]) for b in batches)))
EOF
}

for mode in idle load; do
	echo
	echo "3-instance rollouts, batches of 1, rise 2 x 1 s ($mode, $RUNS runs):"
	for i in $(seq 1 "$RUNS"); do
		v=$(( 3 - cur ))
		cur=$v
		TRACE_PID=
		if [ "${KILN_BENCH_TRACE:-0}" = 1 ]; then
			rm -f "$DIR/trace.jsonl"
			python3 bench/local-flow-trace.py sample "$KILN_STATE_DIR" bench "$DIR/trace.jsonl" &
			TRACE_PID=$!
		fi
		[ $mode = load ] && load_start "$URL" "$DIR/wrk"
		load0=$(cut -d' ' -f1 /proc/loadavg)
		"$KILN" rollout "$DIR/fleet.json" --image "web@$v" --json >"$DIR/ro.json" 2>/dev/null || echo "  rollout to web@$v failed"
		line=$(analyse "$DIR/ro.json" 2>&1) || line="no figures: $line"
		if [ $mode = load ]; then
			load_stop
			line="$line; requests $LOAD_SENT sent, $LOAD_FAILED failed"
		fi
		echo "  to web@$v (load average $load0): $line"
		if [ -n "$TRACE_PID" ]; then
			kill "$TRACE_PID"
			wait "$TRACE_PID" 2>/dev/null || true
			TRACE_PID=
			python3 bench/local-flow-trace.py report "$DIR/ro.json" "$DIR/trace.jsonl" 2 1
		fi
	done
done
