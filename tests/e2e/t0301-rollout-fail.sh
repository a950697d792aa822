#!/bin/bash
test_description='a rollout whose new instances fail restores the old fleet (exit 3): both retire
modes, failure in the first batch and in a later one, and a failed first deploy'
. "$(dirname "$0")/lib-rollout.sh"

# sicken_batch N: in the background, turns batch N's new instances unhealthy once launched,
# inside the 3 s they are pending and then initial (moto_instance_ids answers in tens of
# milliseconds); failed_in_batch checks afterwards that the rollout failed on one of them.
sicken_batch() {
	(
		while :; do
			ids=$(moto_instance_ids tag:kiln:batch=$1 tag:kiln:role=new)
			if [ -n "$ids" ]; then
				curl -sf -o /dev/null -X PATCH \
					-d "{\"health\": {\"unhealthy_instances\": $(echo "$ids" | jq -R . | jq -sc .)}}" \
					"$FRONT_URL/__front/config"
				exit 0
			fi
			sleep 0.1
		done
	) &
	SICK_PID=$!
	track_pid "$SICK_PID"
}

# failed_in_batch N: the instance the rollout's error event names was launched in batch N.
failed_in_batch() {
	local id
	id=$(jq -r 'select(.event == "error") | .failed.instance' events.jsonl) &&
	moto_cli ec2 describe-instances --instance-ids "$id" |
		jq -e --arg n "$1" '[.Reservations[].Instances[].Tags[] | select(.Key == "kiln:batch")][0].Value == $n'
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
	grep -q "Target.FailedHealthChecks" err &&
	grep -q "console output of i-[0-9a-f]* ends:" err &&
	grep -q "Enabling fast FPU save and restore" err &&
	jq -e "select(.event == \"error\") | .failed.health == \"unhealthy\" and (.failed.console | test(\"FPU\"))" events.jsonl
'

test_expect_success 'bad image, per_batch, batch = desired: restored' '
	fail_case per_batch 4 web@4
'

test_expect_success 'at_end, batch 3 turns unhealthy: old instances re-registered, new removed' '
	sicken_batch 3 &&
	fail_case at_end 1 web@2 &&
	failed_in_batch 3
'

test_expect_success 'per_batch, batch 3 turns unhealthy: web@1 relaunched for the batches done' '
	sicken_batch 3 &&
	fail_case per_batch 1 web@2 &&
	failed_in_batch 3 &&
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
