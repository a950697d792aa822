#!/bin/bash
test_description='rollouts behind a classic ELB and behind two target groups at once'
. "$(dirname "$0")/lib-rollout.sh"

test_expect_success 'set up' '
	rollout_setup
'

test_expect_success 'classic ELB: first deploy, then v1 -> v2 with connection draining' '
	jq -n --argjson subnets "$SUBNETS" "{name: \"web\", provider: \"aws\", image: \"web\",
		desired: 2, batch_size: 1, subnet_ids: \$subnets, load_balancer_names: [\"web-classic\"],
		health_timeout_s: 60, health_grace_s: 4, drain_timeout_s: 3}" >classic.json &&
	"$KILN" rollout classic.json --image web@1 2>err &&
	check_fleet $V1 2 web-classic &&
	"$KILN" rollout classic.json --image web@2 2>err &&
	check_fleet $V2 2 web-classic &&
	"$KILN" status classic.json >status.txt &&
	grep -q "web-classic: healthy" status.txt
'

test_expect_success 'two target groups: healthy in both before anything old leaves' '
	reset_fleet &&
	ids=$(moto_cli elb describe-instance-health --load-balancer-name web-classic |
		jq -r ".InstanceStates[].InstanceId") &&
	{ test -z "$ids" || moto_cli elb deregister-instances-from-load-balancer \
		--load-balancer-name web-classic --instances $ids >/dev/null; } &&
	write_fleet two.json 3 1 per_batch "{\"target_group_arns\": [\"$TG1\", \"$TG2\"]}" &&
	"$KILN" rollout two.json --image web@1 2>err &&
	check_fleet $V1 3 "$TG1" "$TG2" &&
	watch_capacity "$TG2" &&
	"$KILN" rollout two.json --image web@2 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	check_fleet $V2 3 "$TG1" "$TG2" &&
	test "$(min_capacity)" -ge 3
'

test_expect_success 'two target groups, the image unhealthy in both: restored in both' '
	register_bad_image &&
	test_expect_code 3 "$KILN" rollout two.json --image web@4 2>err &&
	check_fleet $V2 3 "$TG1" "$TG2"
'

test_done
