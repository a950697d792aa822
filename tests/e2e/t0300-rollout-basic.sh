#!/bin/bash
test_description='kiln rollout against moto through the front: first deploy, v1 -> v2 with a batch
of one and with batch = desired, dry run, status, rollback to the previous image and to v1'
. "$(dirname "$0")/lib-rollout.sh"

test_expect_success 'set up: subnets, target groups, images web@1..3' '
	rollout_setup &&
	write_fleet web.json 4 1 at_end
'

test_expect_success 'a bad fleet file is exit 2 with the position' '
	echo "{\"name\": \"web\", \"image\": \"web\", \"desired\": 2, \"batchsize\": 1}" >bad.json &&
	test_expect_code 2 "$KILN" rollout bad.json 2>err &&
	grep -q "bad.json:1:47: unknown key \"batchsize\"" err
'

test_expect_success 'first deploy: no instances yet, web@1 launched in one batch' '
	"$KILN" rollout web.json --image web@1 2>err &&
	check_fleet $V1 4 &&
	front_stats >stats.json &&
	jq -e ".requests[\"ec2:RunInstances\"] == 2" stats.json &&
	test -z "$(lock_record)" &&
	state_record | jq -e ".current_image == \"web@1\" and .previous_image_id == \"\""
'

test_expect_success 'dry run: the plan, and nothing changes' '
	curl -sf -X POST "$FRONT_URL/__front/reset" -o /dev/null &&
	"$KILN" rollout web.json --dry-run --image web@2 >plan.txt &&
	grep -q "web@1 x4 -> web@2 x4" plan.txt &&
	grep -q "batch 4: launch 1" plan.txt &&
	"$KILN" rollout web.json --dry-run --image 2 --json >plan.json &&
	jq -e ".batches | length == 4" plan.json &&
	jq -e ".replaced | length == 4" plan.json &&
	front_stats | jq -e "[.requests | keys[] | select(test(\"RunInstances|RegisterTargets|DeregisterTargets|TerminateInstances|PutParameter|CreateTags\"))] | length == 0"
'

test_expect_success 'v1 -> v2, batch of one: capacity stays at 4 healthy throughout' '
	watch_capacity "$TG1" &&
	"$KILN" rollout web.json --image web@2 --json >events.jsonl 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	check_fleet $V2 4 &&
	test "$(min_capacity)" -ge 4 &&
	jq -e "select(.event == \"result\") | .outcome == \"done\" and .batches_done == 4" events.jsonl &&
	front_stats | jq -e ".requests[\"ec2:RunInstances\"] <= 4" &&
	state_record | jq -e ".current_image == \"web@2\" and .previous_image == \"web@1\""
'

test_expect_success 'the same image again: nothing to do' '
	"$KILN" rollout web.json --image web@2 2>err &&
	grep -q "already runs web@2" err &&
	check_fleet $V2 4
'

test_expect_success 'v2 -> v3 (the newest, no --image) with batch = desired, retire per_batch' '
	write_fleet web3.json 4 4 per_batch &&
	watch_capacity "$TG1" &&
	"$KILN" rollout web3.json 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	check_fleet $V3 4 &&
	test "$(min_capacity)" -ge 4
'

test_expect_success 'status: instances, versions, health, no interrupted rollout' '
	"$KILN" status web.json >status.txt &&
	grep -q "image: web@3; rollback target: web@2" status.txt &&
	test "$(grep -c "web@3 .*web-a: healthy" status.txt)" -eq 4 &&
	! grep -q INTERRUPTED status.txt &&
	"$KILN" status web.json --json | jq -e ".images[\"web@3\"] == 4 and (.rollout == null)"
'

test_expect_success 'rollback: to the previous image (web@2)' '
	"$KILN" rollback web.json 2>err &&
	check_fleet $V2 4 &&
	state_record | jq -e ".current_image == \"web@2\" and .previous_image == \"web@3\" and .history[0].kind == \"rollback\""
'

test_expect_success 'rollback --to 1' '
	"$KILN" rollback web.json --to 1 2>err &&
	check_fleet $V1 4
'

test_expect_success 'the aws block'"'"'s instance options reach every fleet instance (IMDSv2, root volume)' '
	write_fleet opts.json 4 2 per_batch "{\"aws\": {\"metadata_options\": {\"http_tokens\": \"required\", \"http_put_response_hop_limit\": 1}, \"root_volume_size_gb\": 30, \"root_volume_type\": \"gp3\"}}" &&
	"$KILN" rollout opts.json --image web@2 2>err &&
	check_fleet $V2 4 &&
	moto_cli ec2 describe-instances --filters Name=tag:kiln:fleet,Values=web \
		Name=instance-state-name,Values=pending,running >insts.json &&
	jq -e "[.Reservations[].Instances[]] | length == 4 and all(.MetadataOptions.HttpTokens == \"required\" and .MetadataOptions.HttpPutResponseHopLimit == 1)" insts.json &&
	"$KILN" rollback opts.json --to 1 2>err &&
	check_fleet $V1 4
'

test_expect_success 'a live rollout elsewhere holds the lock: exit 5, naming it' '
	now=$(date +%s) &&
	moto_cli ssm put-parameter --name /kiln/fleets/web/lock --type String --value \
		"{\"rollout_id\": \"r20260101000000-00000001\", \"fleet\": \"web\", \"kind\": \"rollout\", \"host\": \"ci-runner-9\", \"pid\": 4242, \"started_ms\": ${now}000, \"expires_ms\": $((now + 240))000, \"from_image_id\": \"$V1\", \"to_image_id\": \"$V2\", \"to_image\": \"web@2\", \"desired\": 4, \"batch_size\": 1, \"old_count\": 4, \"epoch\": 1, \"epoch_batch\": 1}" >/dev/null &&
	test_expect_code 5 "$KILN" rollout web.json --image web@2 2>err &&
	grep -q "ci-runner-9.*pid 4242" err &&
	test_expect_code 5 "$KILN" rollout web.json --resume 2>err &&
	test_expect_code 5 "$KILN" rollback web.json 2>err &&
	"$KILN" status web.json >status.txt &&
	grep -q "rollout in progress: rollout r20260101000000-00000001" status.txt &&
	check_fleet $V1 4 &&
	moto_cli ssm delete-parameter --name /kiln/fleets/web/lock
'

test_done
