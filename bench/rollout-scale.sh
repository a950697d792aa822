#!/bin/bash
# bench/rollout-scale.sh: kiln rollout at fleet scale, against moto through
# the test front (which counts every request by action and simulates what
# moto lacks: instances pending 1 s, targets initial 2 s after registration,
# deregistered targets draining 2 s, ClientToken idempotency).
#
# For each fleet size in SIZES (default "10 100 1000"): a fleet of that many
# instances of web@1 registered in one target group, rolled onto web@2 with
# batch_size 10%, two subnets, retire at_end. Prints per size: API calls per
# action (the front's stats), poll rounds and calls per poll round
# (DescribeInstances + DescribeTargetHealth over kiln's own count of
# rounds), wall time, and kiln's peak RSS (/usr/bin/time). Then the
# targets: calls per poll round independent of fleet size, RunInstances
# calls <= batches x subnets, peak RSS < 50 MB at 1000.
#
#   bench/rollout-scale.sh                  # builds kiln (Release) if needed
#   SIZES="10 100" bench/rollout-scale.sh
#   KILN=/path/to/kiln bench/rollout-scale.sh
#
# Needs root (unshare --net), moto_server (the pyenv python3), the aws CLI,
# jq, /usr/bin/time. Runs in a network namespace of its own holding only
# loopback; stops what it starts by pid. The machine may be shared: the load
# average is printed before and after.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
sizes=${SIZES:-10 100 1000}
py=${KILN_PYTHON:-python3}

die() { echo "rollout-scale: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "rollout-scale: skipped: unshare --net needs root" >&2; exit 77; }
for c in moto_server aws jq curl /usr/bin/time; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c"
done

if [ -z "${KILN:-}" ]; then
	export KILN=$src/build/release/cli/kiln
	echo "building kiln (Release) in build/release ..."
	cmake -S "$src" -B "$src/build/release" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null &&
		cmake --build "$src/build/release" -j 2 >/dev/null || die "cannot build kiln"
fi
[ -x "$KILN" ] || die "no kiln at $KILN"

if [ -z "${KILN_BENCH_NETNS:-}" ]; then
	export KILN_BENCH_NETNS=1
	exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up

T=$(mktemp -d /tmp/kiln-bench-rollout.XXXXXX)
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

export HOME=$T KILN_STATE_DIR=$T/state NO_COLOR=1 AWS_ACCESS_KEY_ID=AKIAKILNBENCH0000000 \
	AWS_SECRET_ACCESS_KEY=kilnBenchSecret000000000000000000000000 AWS_REGION=us-east-1 \
	AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$FRONT
unset AWS_PROFILE KILN_PROVIDER http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
moto() { AWS_ENDPOINT_URL=$MOTO aws --output json "$@"; }
front_post() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$2" "$FRONT/__front/$1"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
VPC=$(moto ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r ".Vpcs[0].VpcId")
SUBNETS=$(moto ec2 describe-subnets --filters Name=vpc-id,Values=$VPC | jq -c '[.Subnets[].SubnetId] | sort | .[0:2]')
image() {
	local id
	id=$(moto ec2 register-image --name "web-v$1" --root-device-name /dev/sda1 | jq -r .ImageId)
	moto ec2 create-tags --resources "$id" --tags Key=kiln:image,Value=web "Key=kiln:version,Value=$1" >/dev/null
	echo "$id"
}
V1=$(image 1)
V2=$(image 2)

printf '\n%-6s %8s %7s %11s %9s %10s %10s %s\n' SIZE WALL_S BATCHES POLL_ROUNDS CALLS/RND RUN_INST PEAK_RSS "CALLS BY ACTION"
results=""
for n in $sizes; do
	front_post reset '{"upstream": false}'
	front_post config '{"client_token_idempotency": true, "pending_s": 1, "shutting_down_s": 1,
		"health": {"initial_s": 2, "draining_s": 2}}'
	tg=$(moto elbv2 create-target-group --name "web-$n" --protocol HTTP --port 80 --vpc-id "$VPC" |
		jq -r ".TargetGroups[0].TargetGroupArn")
	moto elbv2 modify-target-group-attributes --target-group-arn "$tg" \
		--attributes Key=deregistration_delay.timeout_seconds,Value=5 >/dev/null
	# the fleet before: n instances of web@1, registered (as if rolled out earlier)
	ids=$(moto ec2 run-instances --image-id "$V1" --count "$n" --instance-type t3.micro \
		--tag-specifications "ResourceType=instance,Tags=[{Key=kiln:fleet,Value=web-$n}]" |
		jq -r '.Instances[].InstanceId')
	echo "$ids" | xargs -n 200 sh -c 'AWS_ENDPOINT_URL='"$MOTO"' aws elbv2 register-targets --target-group-arn '"$tg"' --targets $(for i; do printf "Id=%s " "$i"; done)' _
	jq -n --arg name "web-$n" --argjson n "$n" --argjson subnets "$SUBNETS" --arg tg "$tg" '{
		name: $name, provider: "aws", image: "web", desired: $n, batch_size: "10%",
		instance_type: "t3.micro", subnet_ids: $subnets, target_group_arns: [$tg],
		health_timeout_s: 600, health_grace_s: 30, drain_timeout_s: 5}' >"$T/fleet-$n.json"
	sleep 3 # the front's initial window for the seeded targets passes
	front_post reset '{"upstream": false}'
	start=$(date +%s.%N)
	/usr/bin/time -f '%M' -o "$T/rss-$n" "$KILN" rollout "$T/fleet-$n.json" --image web@2 --json \
		>"$T/events-$n.jsonl" 2>"$T/err-$n"
	rc=$?
	wall=$(echo "$(date +%s.%N) - $start" | bc)
	stats=$(curl -sf "$FRONT/__front/stats")
	[ $rc = 0 ] || { echo "size $n: kiln exited $rc:"; tail -5 "$T/err-$n"; results="$results fail"; continue; }
	rounds=$(jq -r 'select(.event == "result") | .poll_rounds' "$T/events-$n.jsonl")
	batches=$(jq -r 'select(.event == "result") | .batches_done' "$T/events-$n.jsonl")
	di=$(echo "$stats" | jq '.requests["ec2:DescribeInstances"] // 0')
	dth=$(echo "$stats" | jq '.requests["elasticloadbalancing:DescribeTargetHealth"] // 0')
	ri=$(echo "$stats" | jq '.requests["ec2:RunInstances"] // 0')
	per=$(echo "scale=2; ($di + $dth) / $rounds" | bc)
	rss_kb=$(cat "$T/rss-$n")
	printf '%-6s %8.1f %7s %11s %9s %10s %7.1f MB %s\n' "$n" "$wall" "$batches" "$rounds" "$per" "$ri" \
		"$(echo "scale=1; $rss_kb / 1024" | bc)" \
		"$(echo "$stats" | jq -c '.requests | to_entries | map("\(.key | sub("elasticloadbalancing"; "elb")):\(.value)") | join(" ")')"
	results="$results $n:$per:$ri:$batches:$rss_kb"
	# leave moto lighter for the next size
	moto ec2 terminate-instances --instance-ids $(moto ec2 describe-instances \
		--filters Name=tag:kiln:fleet,Values=web-$n Name=instance-state-name,Values=pending,running |
		jq -r '.Reservations[].Instances[].InstanceId') >/dev/null
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# the targets
ok=1
first_per=
for r in $results; do
	[ "$r" = fail ] && { ok=0; continue; }
	IFS=: read -r n per ri batches rss <<<"$r"
	first_per=${first_per:-$per}
	if [ "$(echo "$per > $first_per + 0.5" | bc)" = 1 ]; then
		echo "target missed: calls per poll round at $n ($per) grew from $first_per"; ok=0
	fi
	if [ "$ri" -gt $((batches * 2)) ]; then
		echo "target missed: $ri RunInstances calls at $n > $batches batches x 2 subnets"; ok=0
	fi
	if [ "$n" -ge 1000 ] && [ "$rss" -ge $((50 * 1024)) ]; then
		echo "target missed: peak RSS $((rss / 1024)) MB at $n"; ok=0
	fi
done
[ $ok = 1 ] && echo "targets met: calls per poll round flat, RunInstances <= batches x subnets, RSS < 50 MB"
[ $ok = 1 ]
