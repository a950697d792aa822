#!/bin/bash
test_description='a rollout whose new instances fail restores the old fleet (exit 3): both retire
modes, failure in the first batch and in a later one, and a failed first deploy'
. "$(dirname "$0")/lib-rollout.sh"

# sicken_batch N: in the background, turns batch N's new instances unhealthy once launched.
sicken_batch() {
	(
		while :; do
			ids=$(moto_cli ec2 describe-instances --filters Name=tag:kiln:batch,Values=$1 \
				Name=tag:kiln:role,Values=new Name=instance-state-name,Values=pending,running |
				jq -c "[.Reservations[].Instances[].InstanceId]")
			if [ "$ids" != "[]" ]; then
				curl -sf -o /dev/null -X PATCH -d "{\"health\": {\"unhealthy_instances\": $ids}}" \
					"$FRONT_URL/__front/config"
				exit 0
			fi
			sleep 0.2
		done
	) &
	SICK_PID=$!
	track_pid "$SICK_PID"
}

stop_sick() {
	[ -n "${SICK_PID:-}" ] && stop_pid "$SICK_PID"
	SICK_PID=
	return 0
}

# fail_case RETIRE BATCH_SIZE IMAGE: v1 fleet of 4, rollout to IMAGE must restore it.
fail_case() {
	write_fleet web.json 4 "$2" "$1" &&
	watch_capacity "$TG1" &&
	test_expect_code 3 "$KILN" rollout web.json --image "$3" --json >events.jsonl 2>err;
	rc=$?; stop_watch; stop_sick; front_config "$FRONT_BASE" &&
	register_bad_image_health &&
	cat err && test $rc = 0 &&
	grep -q "the fleet was restored to web@1 (4 instances)" err &&
	jq -e "select(.event == \"error\") | .outcome == \"restored\" and .exit_code == 3 and (.failed.instance | startswith(\"i-\"))" events.jsonl &&
	check_fleet $V1 4 &&
	test "$(min_capacity)" -ge 4 &&
	test -z "$(lock_record)" &&
	state_record | jq -e ".last_result == \"restored\" and .current_image == \"web@1\""
}

register_bad_image_health() {
	front_set_unhealthy "$BAD"
}

test_expect_success 'set up: web@1..3, a bad web@4, a fleet of 4 on web@1' '
	rollout_setup &&
	register_bad_image &&
	write_fleet web.json 4 1 at_end &&
	"$KILN" rollout web.json --image web@1 2>err &&
	check_fleet $V1 4
'

test_expect_success 'bad image, at_end, fails in the first batch: restored, exit 3' '
	fail_case at_end 1 web@4 &&
	grep -q "unhealthy in .web-a. for" err &&
	grep -q "Target.FailedHealthChecks" err
'

test_expect_success 'bad image, per_batch, batch = desired: restored' '
	fail_case per_batch 4 web@4
'

test_expect_success 'at_end, batch 3 turns unhealthy: old instances re-registered, new removed' '
	sicken_batch 3 &&
	fail_case at_end 1 web@2 &&
	grep -q "batch 3/4: launching" events.jsonl
'

test_expect_success 'per_batch, batch 3 turns unhealthy: web@1 relaunched for the batches done' '
	sicken_batch 3 &&
	fail_case per_batch 1 web@2 &&
	moto_cli ec2 describe-instances --filters Name=tag:kiln:role,Values=old \
		Name=tag:kiln:batch,Values=0 Name=instance-state-name,Values=running |
		jq -e "[.Reservations[].Instances[]] | length == 2"
'

test_expect_success 'a failed first deploy leaves no instances' '
	reset_fleet &&
	write_fleet web.json 2 1 at_end &&
	test_expect_code 3 "$KILN" rollout web.json --image web@4 2>err &&
	grep -q "restored to no instances" err &&
	test -z "$(all_running)" &&
	test -z "$(tg_targets "$TG1" | grep -v draining)"
'

test_done
