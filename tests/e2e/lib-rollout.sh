# tests/e2e/lib-rollout.sh: what the rollout suites (t03xx) share, on top of lib.sh.
#
# Starts moto and the test front (which adds what moto lacks: targets
# "initial" for a while after registration, chosen images or instances
# "unhealthy", deregistered targets "draining" for a while, instances
# "pending", ClientToken idempotency), creates a VPC's worth of things in
# moto (two subnets, target groups with a short deregistration delay, a
# classic ELB), and registers images web@1..3 and a bad one directly in moto,
# tagged as kiln's builder tags them.
#
#	. "$(dirname "$0")/lib-rollout.sh"
#	rollout_setup
#	write_fleet web.json 4 1 at_end
#	test_expect_success 'v1 -> v2' '"$KILN" rollout web.json --image web@2 && check_fleet $V2 4'

# lib.sh once: a suite that sourced lib-build.sh (which sources it) keeps its trash.
declare -F test_expect_success >/dev/null || . "$(dirname "$0")/lib.sh"

command -v jq >/dev/null 2>&1 || skip_all "no jq"
command -v aws >/dev/null 2>&1 || skip_all "no aws CLI (it sets up and inspects moto)"

# Set-up and inspection go straight to moto, never through the front's faults.
moto_cli() {
	AWS_ENDPOINT_URL=$MOTO_URL aws --output json "$@"
}

# moto_instance_ids FILTER=VALUE[,VALUE]...: ids of moto's pending or running instances
# matching every filter ("tag:kiln:batch=3"), one per line. One curl request straight to
# moto (which checks no signature, only the credential scope): tens of milliseconds where
# the AWS CLI takes most of a second to start, for watchers that must act inside one of the
# front's windows (a batch pending then initial for 3 s).
moto_instance_ids() {
	local i=1 f v k args=()
	for f in "$@" instance-state-name=pending,running; do
		args+=(--data-urlencode "Filter.$i.Name=${f%%=*}")
		k=1
		for v in $(echo "${f#*=}" | tr , ' '); do
			args+=(--data-urlencode "Filter.$i.Value.$k=$v")
			k=$((k + 1))
		done
		i=$((i + 1))
	done
	curl -sf --max-time 10 -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/ec2/aws4_request, SignedHeaders=host, Signature=0" \
		--data "Action=DescribeInstances&Version=2016-11-15" "${args[@]}" "$MOTO_URL/" |
		grep -o '<instanceId>[^<]*</instanceId>' | sed 's/<[^>]*>//g' | sort -u
}

# Health as the front simulates it.
front_cli() {
	AWS_ENDPOINT_URL=$FRONT_URL aws --output json "$@"
}

# register_image NAME VERSION: an AMI tagged kiln:image/kiln:version; prints its id.
register_image() {
	local id
	id=$(moto_cli ec2 register-image --name "$1-v$2" --root-device-name /dev/sda1 | jq -r .ImageId) &&
	moto_cli ec2 create-tags --resources "$id" \
		--tags "Key=kiln:image,Value=$1" "Key=kiln:version,Value=$2" >/dev/null &&
	echo "$id"
}

# The front's simulation: pending 1 s, initial 2 s, draining 2 s, the bad image unhealthy.
FRONT_BASE='{"client_token_idempotency": true, "pending_s": 1, "shutting_down_s": 1,
	"health": {"initial_s": 2, "draining_s": 2, "unhealthy_images": []}}'

front_set_unhealthy() {
	front_config "$(echo "$FRONT_BASE" | jq -c --argjson i "$(printf '%s\n' "$@" | jq -R . | jq -s .)" \
		'.health.unhealthy_images = $i')"
}

rollout_setup() {
	[ -n "${MOTO_URL:-}" ] || start_moto
	[ -n "${FRONT_URL:-}" ] || start_front
	VPC=$(moto_cli ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r ".Vpcs[0].VpcId") &&
	SUBNETS=$(moto_cli ec2 describe-subnets --filters Name=vpc-id,Values=$VPC |
		jq -c '[.Subnets[].SubnetId] | sort | .[0:2]') &&
	TG1=$(moto_cli elbv2 create-target-group --name web-a --protocol HTTP --port 80 --vpc-id $VPC |
		jq -r ".TargetGroups[0].TargetGroupArn") &&
	TG2=$(moto_cli elbv2 create-target-group --name web-b --protocol HTTP --port 80 --vpc-id $VPC |
		jq -r ".TargetGroups[0].TargetGroupArn") &&
	moto_cli elbv2 modify-target-group-attributes --target-group-arn "$TG1" \
		--attributes Key=deregistration_delay.timeout_seconds,Value=5 >/dev/null &&
	moto_cli elbv2 modify-target-group-attributes --target-group-arn "$TG2" \
		--attributes Key=deregistration_delay.timeout_seconds,Value=5 >/dev/null &&
	moto_cli elb create-load-balancer --load-balancer-name web-classic \
		--listeners Protocol=HTTP,LoadBalancerPort=80,InstanceProtocol=HTTP,InstancePort=80 \
		--availability-zones us-east-1a >/dev/null &&
	V1=$(register_image web 1) && V2=$(register_image web 2) && V3=$(register_image web 3) &&
	front_config "$FRONT_BASE" &&
	export VPC SUBNETS TG1 TG2 V1 V2 V3
}

# web@4, an image whose instances never pass health checks: sets BAD.
register_bad_image() {
	BAD=$(register_image web 4) && front_set_unhealthy "$BAD" && export BAD
}

# watch_capacity LB: logs the healthy count of a target group into capacity.log, one
# line a reading, until stop_watch; min_capacity prints the lowest seen. A reading
# whose describe failed (the CLI timed out on a busy machine) is dropped, not logged
# as 0; stop_watch waits for the reading in flight, so nothing is appended after it.
watch_capacity() {
	rm -f capacity.log watch.stop
	(
		while [ ! -e watch.stop ]; do
			if out=$(set -o pipefail; tg_targets "$1"); then
				printf '%s\n' "$out" | grep -c " healthy$" >>capacity.log
			fi
			sleep 0.3
		done
	) &
	WATCH_PID=$!
	track_pid "$WATCH_PID"
}

stop_watch() {
	if [ -n "${WATCH_PID:-}" ]; then
		touch watch.stop
		wait "$WATCH_PID" 2>/dev/null
	fi
	WATCH_PID=
	return 0
}

# The lowest healthy count seen; fails (printing nothing) if no reading succeeded.
min_capacity() {
	[ -s capacity.log ] || { echo "min_capacity: no reading of the target group succeeded" >&2; return 1; }
	sort -n capacity.log | head -1
}

# write_fleet FILE DESIRED BATCH RETIRE [EXTRA_JSON]: fleet "web" over TG1 (EXTRA_JSON merges in).
write_fleet() {
	jq -n --argjson desired "$2" --argjson batch "$3" --arg retire "$4" \
		--argjson subnets "$SUBNETS" --arg tg "$TG1" --argjson extra "${5:-{\}}" '{
		name: "web", provider: "aws", image: "web", desired: $desired, batch_size: $batch,
		retire: $retire, instance_type: "t3.micro", subnet_ids: $subnets,
		target_group_arns: [$tg], health_timeout_s: 60, health_grace_s: 4, drain_timeout_s: 5
	} + $extra' >"$1"
}

# Running instances of the fleet as "ID IMAGE" lines (moto's view: the real states).
fleet_instances() {
	moto_cli ec2 describe-instances --filters Name=tag:kiln:fleet,Values=web \
		Name=instance-state-name,Values=pending,running |
		jq -r '.Reservations[].Instances[] | "\(.InstanceId) \(.ImageId)"' | sort
}

# Every instance moto runs, whatever its tags.
all_running() {
	moto_cli ec2 describe-instances --filters Name=instance-state-name,Values=pending,running |
		jq -r '.Reservations[].Instances[].InstanceId' | sort
}

# "ID HEALTH" of every target of a target group, as the front reports it.
tg_targets() {
	front_cli elbv2 describe-target-health --target-group-arn "$1" |
		jq -r '.TargetHealthDescriptions[] | "\(.Target.Id) \(.TargetHealth.State)"' | sort
}

elb_targets() {
	front_cli elb describe-instance-health --load-balancer-name "$1" |
		jq -r '.InstanceStates[] | "\(.InstanceId) \(.State)"' | sort
}

# check_fleet IMAGE N [LB...]: exactly N instances run, all of the fleet and on IMAGE,
# and each is healthy (InService) in every load balancer given (default TG1), nothing else
# registered there: nothing orphaned, nothing untracked.
check_fleet() {
	local image=$1 n=$2 lb got
	shift 2
	[ $# -gt 0 ] || set -- "$TG1"
	sleep 3 # the front's draining and shutting-down windows pass
	fleet_instances >fleet.now
	all_running >all.now
	if [ "$(wc -l <fleet.now)" -ne "$n" ] || [ "$(awk -v i="$image" '$2 == i' fleet.now | wc -l)" -ne "$n" ]; then
		echo "check_fleet: wanted $n on $image, fleet is:"; cat fleet.now; return 1
	fi
	if [ "$(wc -l <all.now)" -ne "$n" ]; then
		echo "check_fleet: moto runs more than the fleet:"; cat all.now; return 1
	fi
	for lb in "$@"; do
		case "$lb" in
		arn:*) tg_targets "$lb" >lb.now; got=$(grep -c ' healthy$' lb.now) ;;
		*) elb_targets "$lb" >lb.now; got=$(grep -c ' InService$' lb.now) ;;
		esac
		if [ "$got" -ne "$n" ] || [ "$(wc -l <lb.now)" -ne "$n" ] ||
		   [ "$(cut -d' ' -f1 lb.now)" != "$(cut -d' ' -f1 fleet.now)" ]; then
			echo "check_fleet: $lb has:"; cat lb.now; echo "fleet:"; cat fleet.now; return 1
		fi
	done
}

# The fleet's lock record, or nothing.
lock_record() {
	moto_cli ssm get-parameter --name /kiln/fleets/web/lock 2>/dev/null | jq -r .Parameter.Value
}

state_record() {
	moto_cli ssm get-parameter --name /kiln/fleets/web/state | jq -r .Parameter.Value
}

# Seeds the fleet with N instances of IMAGE registered in TG1 (as if rolled out by hand).
seed_fleet() {
	local ids
	ids=$(moto_cli ec2 run-instances --image-id "$1" --count "$2" --instance-type t3.micro \
		--tag-specifications 'ResourceType=instance,Tags=[{Key=kiln:fleet,Value=web}]' |
		jq -r '.Instances[].InstanceId') &&
	moto_cli elbv2 register-targets --target-group-arn "$TG1" \
		--targets $(for i in $ids; do printf 'Id=%s ' "$i"; done) >/dev/null
}

# Terminates everything and clears kiln's records, for the next scenario.
reset_fleet() {
	local ids
	ids=$(all_running)
	[ -z "$ids" ] || moto_cli ec2 terminate-instances --instance-ids $ids >/dev/null
	for tg in "$TG1" "$TG2"; do
		ids=$(moto_cli elbv2 describe-target-health --target-group-arn "$tg" |
			jq -r '.TargetHealthDescriptions[].Target.Id')
		[ -z "$ids" ] || moto_cli elbv2 deregister-targets --target-group-arn "$tg" \
			--targets $(for i in $ids; do printf 'Id=%s ' "$i"; done) >/dev/null
	done
	moto_cli ssm delete-parameter --name /kiln/fleets/web/lock >/dev/null 2>&1
	moto_cli ssm delete-parameter --name /kiln/fleets/web/state >/dev/null 2>&1
	rm -rf "$KILN_STATE_DIR"
	sleep 3
	return 0
}
