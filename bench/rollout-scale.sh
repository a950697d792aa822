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
# Bucket mode (issue 6, "Never throttled"): BUCKETS=1 runs every size with
# the front enforcing EC2's token buckets, exactly the table kiln keeps on
# the client side (aws/ratelimit.c, printed by bench/aws_throttle
# --front-config; class buckets shared by their actions, resource buckets
# costing one token per instance), on top of the same simulated windows.
# BUCKETS=both runs each size without, then with the buckets (same moto
# process, same load), so the cost of the buckets shows as a difference.
# Each run starts on a freshly reset moto (no instances of earlier runs for
# moto to scan). Per bucket-mode run it prints the front's throttling
# replies (stats "throttled", want 0) and:
#
#   bucket bound B = max over the buckets b the run drew on of
#                    max(0, (tokens_b - burst_b) / rate_b)
#     tokens_b: what bucket b gave during the run (the front's stats
#     "bucket_tokens": one per request for a class bucket, the instances
#     for a resource bucket). The least time any client needs to send the
#     calls this run made, if it sent each the first instant the bucket
#     allowed, with no latency and nothing else to wait for.
#   scenario minimum S = batches x (pending_s + initial_s + draining_s)
#     Every batch waits, one after the other: its new instances pending
#     (pending_s after RunInstances), then initial in the target group
#     (initial_s after registration, which needs them running), then its
#     old instances draining (draining_s after deregistration, shorter than
#     drain_timeout_s, so the drain ends when the front says unused). At
#     the end the old instances are terminated without waiting. The
#     front's windows here: pending 1 s, initial 2 s, draining 2 s.
#   bound = max(B, S)
#     Not B + S: the buckets refill while a batch waits out its windows
#     (RunInstances 2/s refills 10 tokens in one batch's 5 s, a batch draws
#     2), so bucket waits and windows overlap and their sum is not a lower
#     bound; the larger of the two is.
#   ratio = wall / bound (the target: <= 1.10).
# It also splits the wall time: in requests (the sum of the front's
# per-request "ms", from its --log: the front and moto answering; kiln's
# engine sends one request at a time, so this is time kiln waited for
# replies) and between requests (wall minus that: kiln's naps between poll
# rounds, its client-side bucket waits, its own work and process start).
# The windows of S are spent partly in requests (poll rounds) and partly
# between them, so S is not a part of either. When S and moto dominate, B
# is the figure the buckets impose here, and bench/throttle.sh is where
# the buckets are the bottleneck; BUCKETS=both shows what they cost.
#
#   BUCKETS=1 SIZES=1000 bench/rollout-scale.sh
#   BUCKETS=both SIZES=1000 bench/rollout-scale.sh
#
# Needs root (unshare --net), moto_server (the pyenv python3), the aws CLI,
# jq, bc, /usr/bin/time. Runs in a network namespace of its own holding only
# loopback; stops what it starts by pid. The machine may be shared: the load
# average is printed before and after, and beside each run.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
sizes=${SIZES:-10 100 1000}
py=${KILN_PYTHON:-python3}

die() { echo "rollout-scale: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "rollout-scale: skipped: unshare --net needs root" >&2; exit 77; }
for c in moto_server aws jq bc curl /usr/bin/time; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c"
done

if [ -z "${KILN:-}" ]; then
	export KILN=$src/build/release/cli/kiln
	echo "building kiln (Release) in build/release ..."
	cmake -S "$src" -B "$src/build/release" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null &&
		cmake --build "$src/build/release" -j 2 >/dev/null || die "cannot build kiln"
fi
[ -x "$KILN" ] || die "no kiln at $KILN"
case ${BUCKETS:-} in
"" | 0) modes=plain ;;
1) modes=buckets ;;
both) modes="plain buckets" ;;
*) die "BUCKETS is 1, both or unset" ;;
esac
if [ "$modes" != plain ] && [ -z "${BUCKETS_JSON:-}" ]; then
	# kiln's own table, from the code that enforces it on the client side
	throttle=${AWS_THROTTLE:-$src/build/release/bench/aws_throttle}
	if [ ! -x "$throttle" ]; then
		cmake -S "$src" -B "$src/build/release" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null &&
			cmake --build "$src/build/release" -j 2 --target aws_throttle >/dev/null ||
			die "cannot build aws_throttle"
	fi
	BUCKETS_JSON=$("$throttle" --front-config) || die "aws_throttle --front-config failed"
	export BUCKETS_JSON
fi

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
"$py" "$src/tests/front/front.py" --listen 127.0.0.1:0 --upstream "$MOTO" --log "$T/requests.jsonl" \
	>"$T/front.ready" 2>"$T/front.log" &
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
[ "$modes" = plain ] || echo "front buckets (kiln's table): $BUCKETS_JSON"
image() {
	local id
	id=$(moto ec2 register-image --name "web-v$1" --root-device-name /dev/sda1 | jq -r .ImageId)
	moto ec2 create-tags --resources "$id" --tags Key=kiln:image,Value=web "Key=kiln:version,Value=$1" >/dev/null
	echo "$id"
}
# the simulated windows (S in the header is computed from these)
PENDING_S=1 INITIAL_S=2 DRAINING_S=2
base_config=$(jq -n --argjson p $PENDING_S --argjson i $INITIAL_S --argjson d $DRAINING_S \
	'{client_token_idempotency: true, pending_s: $p, shutting_down_s: 1,
	  health: {initial_s: $i, draining_s: $d}}')

printf '\n%-6s %-7s %8s %7s %11s %9s %10s %10s %s\n' SIZE MODE WALL_S BATCHES POLL_ROUNDS CALLS/RND RUN_INST \
	PEAK_RSS "CALLS BY ACTION"
results=""
bucket_lines=""
for n in $sizes; do
	for mode in $modes; do
		# a fresh moto: no instances of earlier runs to scan
		front_post reset '{"upstream": true}' || die "cannot reset the front and moto"
		VPC=$(moto ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r ".Vpcs[0].VpcId")
		SUBNETS=$(moto ec2 describe-subnets --filters Name=vpc-id,Values=$VPC |
			jq -c '[.Subnets[].SubnetId] | sort | .[0:2]')
		V1=$(image 1)
		V2=$(image 2)
		if [ "$mode" = buckets ]; then
			config=$(jq -n --argjson a "$base_config" --argjson b "$BUCKETS_JSON" '$a + $b')
		else
			config=$base_config
		fi
		front_post config "$config" || die "the front refused its configuration"
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
		# clears the stats and refills every bucket; the configuration stays
		front_post reset '{"upstream": false}'
		log_from=$(($(wc -l <"$T/requests.jsonl") + 1))
		load=$(cut -d' ' -f1 /proc/loadavg)
		start=$(date +%s.%N)
		/usr/bin/time -f '%M' -o "$T/rss-$n-$mode" "$KILN" rollout "$T/fleet-$n.json" --image web@2 --json \
			>"$T/events-$n-$mode.jsonl" 2>"$T/err-$n-$mode"
		rc=$?
		wall=$(echo "$(date +%s.%N) - $start" | bc)
		stats=$(curl -sf "$FRONT/__front/stats")
		tail -n +"$log_from" "$T/requests.jsonl" >"$T/requests-$n-$mode.jsonl"
		[ $rc = 0 ] || {
			echo "size $n ($mode): kiln exited $rc:"
			tail -5 "$T/err-$n-$mode"
			results="$results fail"
			continue
		}
		rounds=$(jq -r 'select(.event == "result") | .poll_rounds' "$T/events-$n-$mode.jsonl")
		batches=$(jq -r 'select(.event == "result") | .batches_done' "$T/events-$n-$mode.jsonl")
		di=$(echo "$stats" | jq '.requests["ec2:DescribeInstances"] // 0')
		dth=$(echo "$stats" | jq '.requests["elasticloadbalancing:DescribeTargetHealth"] // 0')
		ri=$(echo "$stats" | jq '.requests["ec2:RunInstances"] // 0')
		per=$(echo "scale=2; ($di + $dth) / $rounds" | bc)
		rss_kb=$(cat "$T/rss-$n-$mode")
		printf '%-6s %-7s %8.1f %7s %11s %9s %10s %7.1f MB %s\n' "$n" "$mode" "$wall" "$batches" "$rounds" \
			"$per" "$ri" "$(echo "scale=1; $rss_kb / 1024" | bc)" \
			"$(echo "$stats" | jq -c '.requests | to_entries | map("\(.key | sub("elasticloadbalancing"; "elb")):\(.value)") | join(" ")')"
		echo "       load average at start: $load, after: $(cut -d' ' -f1 /proc/loadavg)"
		results="$results $n:$per:$ri:$batches:$rss_kb"
		[ "$mode" = buckets ] || continue

		# the bound (see the header)
		b=$(echo "$stats" | jq --argjson cfg "$BUCKETS_JSON" -c '
			.bucket_tokens | to_entries | map(
				(if (.key | startswith("resource:")) then $cfg.resource_buckets[.key[9:]]
				 else $cfg.buckets[.key] end) as $br
				| {key, tokens: .value, burst: $br[0], rate: $br[1],
				   s: ([0, (.value - $br[0]) / $br[1]] | max)})')
		bb=$(echo "$b" | jq 'map(.s) | max // 0')
		sm=$((batches * (PENDING_S + INITIAL_S + DRAINING_S)))
		bound=$(echo "$bb $sm" | awk '{ print ($1 > $2 ? $1 : $2) }')
		srv=$(jq -s 'map(.ms // 0) | add / 1000' "$T/requests-$n-$mode.jsonl")
		throttled=$(echo "$stats" | jq .throttled)
		ratio=$(echo "$wall $bound" | awk '{ printf "%.2f", $1 / $2 }')
		echo "       buckets drawn on (tokens / burst / rate -> least s):" \
			"$(echo "$b" | jq -r 'map("\(.key) \(.tokens)/\(.burst)/\(.rate) -> \(.s * 100 | round / 100)") | join(", ")')"
		echo "       throttling replies: $throttled $(echo "$stats" | jq -c .throttled_by_action)"
		printf '       bucket bound B %.2f s; scenario minimum S %d s (%d batches x %d s); bound %.2f s; wall %.1f s; wall / bound %s\n' \
			"$bb" "$sm" "$batches" $((PENDING_S + INITIAL_S + DRAINING_S)) "$bound" "$wall" "$ratio"
		printf '       wall %.1f s = %.1f s in requests (front + moto) + %.1f s between requests (kiln)\n' \
			"$wall" "$srv" "$(echo "$wall - $srv" | bc)"
		bucket_lines="$bucket_lines $n:$throttled:$ratio"
	done
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
for r in $bucket_lines; do
	IFS=: read -r n throttled ratio <<<"$r"
	if [ "$throttled" != 0 ]; then
		echo "target missed: $throttled throttling replies at $n"; ok=0
	else
		echo "target met: no throttling replies at $n"
	fi
	if [ "$(echo "$ratio > 1.10" | bc)" = 1 ]; then
		echo "target missed: wall / bound $ratio at $n (want <= 1.10; see the lines above for what the wall went to)"; ok=0
	else
		echo "target met: wall / bound $ratio at $n"
	fi
done
[ $ok = 1 ]
