#!/bin/bash
test_description='a rollout killed (SIGKILL) mid-batch is shown by status, refused by a plain
rollout, finished by --resume without launching twice, or undone by rollback; SIGINT stops it
consistently (exit 4); a rollout killed on another machine is taken over by --resume here'
. "$(dirname "$0")/lib-rollout.sh"

# kill_mid_batch SIGNAL IMAGE_ID ARGS...: starts kiln rollout ARGS, sends SIGNAL as soon
# as batch 2's instance of IMAGE_ID is in moto (launched, not yet healthy: the front keeps
# it pending then initial for 3 s); sets RC to kiln's exit status. Watching for the image,
# not just the tags, keeps an earlier rollout's batch 2 (still serving) from triggering it.
kill_mid_batch() {
	local sig=$1 image=$2 pid n=0
	shift 2
	"$KILN" rollout "$@" 2>run.err &
	pid=$!
	while [ $n -lt 3000 ]; do
		[ -n "$(moto_instance_ids image-id=$image tag:kiln:batch=2 tag:kiln:role=new)" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
		n=$((n + 1))
	done
	kill -s "$sig" $pid
	wait $pid
	RC=$?
}

# How many instances rollout R launched as new, terminated ones included.
launched_by() {
	moto_cli ec2 describe-instances --filters Name=tag:kiln:rollout-id,Values=$1 \
		Name=tag:kiln:role,Values=new | jq "[.Reservations[].Instances[]] | length"
}

test_expect_success 'set up: a fleet of 4 on web@1' '
	rollout_setup &&
	write_fleet web.json 4 1 at_end &&
	"$KILN" rollout web.json --image web@1 2>err &&
	check_fleet $V1 4
'

test_expect_success 'SIGKILL mid-batch: status shows it with the commands that settle it' '
	kill_mid_batch KILL $V2 web.json --image web@2 &&
	test $RC = 137 &&
	R=$(lock_record | jq -r .rollout_id) && test -n "$R" &&
	"$KILN" status web.json >status.txt &&
	grep -q "INTERRUPTED rollout $R: web@1 -> web@2" status.txt &&
	grep -q "finish it:  kiln rollout web.json --resume" status.txt &&
	grep -q "undo it:    kiln rollback web.json" status.txt
'

test_expect_success 'a plain rollout is refused while it is unsettled' '
	test_expect_code 1 "$KILN" rollout web.json --image web@3 2>err &&
	grep -q "interrupted rollout.*--resume" err
'

test_expect_success '--resume finishes it, launching nothing twice' '
	watch_capacity "$TG1" &&
	"$KILN" rollout web.json --resume 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	check_fleet $V2 4 &&
	test "$(min_capacity)" -ge 4 &&
	test "$(launched_by $R)" = 4 &&
	test -z "$(lock_record)" &&
	front_stats | jq -e ".client_token_replays >= 1"
'

test_expect_success 'SIGKILL mid-batch, then rollback undoes it' '
	kill_mid_batch KILL $V3 web.json --image web@3 &&
	test $RC = 137 &&
	watch_capacity "$TG1" &&
	"$KILN" rollback web.json 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	grep -q "undoing rollout" err &&
	check_fleet $V2 4 &&
	test "$(min_capacity)" -ge 4 &&
	test -z "$(lock_record)" &&
	state_record | jq -e ".current_image == \"web@2\" and .history[0].result == \"undone\""
'

test_expect_success 'SIGINT mid-batch: exit 4, consistent; --resume finishes' '
	kill_mid_batch INT $V3 web.json --image web@3 &&
	test $RC = 4 &&
	grep -q "interrupted by SIGINT" run.err &&
	R=$(lock_record | jq -r .rollout_id) && test -n "$R" &&
	"$KILN" status web.json --json | jq -e ".rollout.alive == false" &&
	"$KILN" rollout web.json --resume 2>err &&
	check_fleet $V3 4
'

test_expect_success 'killed on another machine: --resume here takes over its expired lock, with no journal' '
	kill_mid_batch KILL $V2 web.json --image web@2 &&
	test $RC = 137 &&
	R=$(lock_record | jq -r .rollout_id) && test -n "$R" &&
	lock_record | jq -c ".host = \"ci-runner-gone\" | .pid = 4242 | .expires_ms = $(($(date +%s) - 10))000" >lock.json &&
	moto_cli ssm put-parameter --overwrite --name /kiln/fleets/web/lock --type String \
		--value "$(cat lock.json)" >/dev/null &&
	rm -rf "$KILN_STATE_DIR" &&
	"$KILN" status web.json >status.txt &&
	grep -q "INTERRUPTED rollout $R: web@3 -> web@2, by host ci-runner-gone pid 4242" status.txt &&
	test_expect_code 1 "$KILN" rollout web.json --image web@1 2>err &&
	grep -q "interrupted rollout.*ci-runner-gone" err &&
	watch_capacity "$TG1" &&
	"$KILN" rollout web.json --resume 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	check_fleet $V2 4 &&
	test "$(min_capacity)" -ge 4 &&
	test "$(launched_by $R)" = 4 &&
	test -z "$(lock_record)" &&
	moto_cli ssm get-parameters-by-path --path /kiln/fleets/web --recursive |
		jq -e "[.Parameters[].Name] == [\"/kiln/fleets/web/state\"]"
'

test_expect_success 'rollback to v1 after all that' '
	"$KILN" rollback web.json --to web@1 2>err &&
	check_fleet $V1 4
'

test_done
