#!/bin/bash
# bench/local-provider.sh: the local provider's own figures.
#
#   bench/local-provider.sh [BUILD_DIR]     (default build/asan; needs root)
#
# - instance start to SSH-ready: launch, then an SSH login with the key pair's
#   key polled every 50 ms (the driver's own timestamps, not the engines' backoff)
# - image creation time and layer size, after a small change (hello) and after a
#   web stack (nginx + uwsgi + python3-django, as images/web installs)
#
# Uses its own state dir, subnet and bridge; takes everything down at the end.
# The base image comes from $KILN_LOCAL_BASE_CACHE (default BUILD_DIR/local-base-cache).
set -eu
BUILD=${1:-build/asan}
KILN=$BUILD/cli/kiln
DRIVER=$BUILD/tests/kiln-local-driver
RUNS=${KILN_BENCH_RUNS:-5}
export KILN_LOCAL_BASE_CACHE=${KILN_LOCAL_BASE_CACHE:-$BUILD/local-base-cache}
export KILN_LOCAL_SUBNET=${KILN_BENCH_LOCAL_SUBNET:-10.232.241.0/24} KILN_LOCAL_BRIDGE=kilnbench0
DIR=$(mktemp -d /tmp/kiln-bench-local.XXXXXX)
export KILN_STATE_DIR=$DIR/state
trap '"$KILN" local down --purge >/dev/null 2>&1; rm -rf "$DIR"' EXIT

ms() { echo $(( $(date +%s%N) / 1000000 )); }
on() {
	ssh -i "$DIR/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
		-o LogLevel=ERROR -o ConnectTimeout=2 "root@$1" "${@:2}"
}
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {printf "min %d ms, median %d ms, max %d ms, mean %d ms (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], s/NR, NR}'; }

echo "kiln local up (base from cache or mmdebstrap)..."
t0=$(ms); "$KILN" local up >/dev/null 2>&1; echo "  up: $(( $(ms) - t0 )) ms"
ssh-keygen -q -t ed25519 -N '' -f "$DIR/key"
"$DRIVER" keypair-import bench "$DIR/key.pub"

echo "instance start to SSH-ready ($RUNS runs, one at a time):"
for i in $(seq 1 "$RUNS"); do
	t0=$(ms)
	id=$("$DRIVER" launch debian-12 key=bench)
	t_launch=$(( $(ms) - t0 ))
	ip=$("$DRIVER" describe "$id" | awk '{print $3}')
	until on "$ip" true 2>/dev/null; do sleep 0.05; done
	t_ssh=$(( $(ms) - t0 ))
	"$DRIVER" wait-running "$id" >/dev/null
	t0=$(ms); "$DRIVER" stop "$id"; t_stop=$(( $(ms) - t0 ))
	t0=$(ms); "$DRIVER" terminate "$id"; t_term=$(( $(ms) - t0 ))
	echo "  run $i: launch call $t_launch ms, SSH login works at $t_ssh ms; stop $t_stop ms, terminate $t_term ms"
	echo "$t_ssh" >>"$DIR/ssh"
	echo "$t_stop" >>"$DIR/stop"
done
echo "  SSH-ready: $(stats <"$DIR/ssh")"
echo "  stop:      $(stats <"$DIR/stop")"

image() { # NAME COMMAND
	local id ip t0 t img layer bytes
	id=$("$DRIVER" launch debian-12 key=bench)
	ip=$("$DRIVER" wait-running "$id" | awk '{print $2}')
	until on "$ip" true 2>/dev/null; do sleep 0.1; done
	t0=$(ms)
	on "$ip" "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $2 >/dev/null && apt-get clean"
	t=$(( $(ms) - t0 ))
	"$DRIVER" stop "$id"
	t0=$(ms)
	img=$("$DRIVER" image-create "$id" "bench-$1")
	local t_img=$(( $(ms) - t0 ))
	layer=$("$DRIVER" images owner=self | awk -v i="$img" '$1 == i {print $6}')
	bytes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['size_bytes'])" "$KILN_STATE_DIR/local/layers/$layer.json")
	echo "  $1 ($2): install $t ms; image_create to available $t_img ms; layer $(( bytes / 1024 / 1024 )) MiB ($bytes bytes)"
	"$DRIVER" terminate "$id"
}
echo "image creation:"
image small hello
image web "nginx uwsgi uwsgi-plugin-python3 python3-django"
