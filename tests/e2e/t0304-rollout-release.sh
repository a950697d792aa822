#!/bin/bash
test_description='kiln release: build, then roll the fleet onto what was built; a failed build
changes nothing in the fleet'
. "$(dirname "$0")/lib-build.sh"
BUILD_FRONT=1 build_setup
. "$TEST_DIRECTORY/lib-rollout.sh"

test_expect_success 'set up: web@1..3 registered, a fleet of 3 on web@1' '
	rollout_setup &&
	write_fleet web.json 3 1 at_end &&
	"$KILN" rollout web.json --image web@1 2>err &&
	check_fleet $V1 3
'

test_expect_success 'a template of another image is refused before anything is built' '
	IMAGE_NAME=api write_template api.json "" &&
	test_expect_code 2 "$KILN" release web.json --template api.json 2>err &&
	grep -q "builds image .api., but fleet .web. runs .web." err &&
	test -z "$(images_named api)"
'

test_expect_success 'release: builds web@4 and rolls the fleet onto it' '
	write_template tpl.json "" "[{\"type\": \"shell\", \"inline\": [\"echo release {{version}}\"]}]" &&
	watch_capacity "$TG1" &&
	"$KILN" release web.json --template tpl.json >out 2>err;
	rc=$?; stop_watch; test $rc = 0 &&
	line=$(tail -n1 out) &&
	case "$line" in "web@4 ami-"*) ;; *) false ;; esac &&
	V4=${line#web@4 } &&
	check_fleet $V4 3 &&
	test "$(min_capacity)" -ge 3 &&
	state_record | jq -e ".current_image == \"web@4\" and .previous_image == \"web@1\"" &&
	grep -q "| release 4" err
'

test_expect_success 'a failed build: exit 1, the fleet untouched, nothing launched for it' '
	curl -sf -X POST "$FRONT_URL/__front/reset" -o /dev/null &&
	front_config "$FRONT_BASE" &&
	write_template bad.json "" "[{\"type\": \"shell\", \"inline\": [\"exit 7\"]}]" &&
	test_expect_code 1 "$KILN" release web.json --template bad.json 2>err &&
	grep -q "the build failed, the fleet is untouched" err &&
	check_fleet $V4 3 &&
	test -z "$(lock_record)" &&
	front_stats | jq -e "(.requests[\"elasticloadbalancing:RegisterTargets\"] // 0) == 0"
'

test_expect_success 'a locked fleet: refused before building (exit 5)' '
	now=$(date +%s) &&
	moto_cli ssm put-parameter --name /kiln/fleets/web/lock --type String --value \
		"{\"rollout_id\": \"r20260101000000-00000002\", \"fleet\": \"web\", \"kind\": \"rollout\", \"host\": \"ci-runner-3\", \"pid\": 77, \"started_ms\": ${now}000, \"expires_ms\": $((now + 240))000, \"to_image_id\": \"$V2\", \"desired\": 3, \"batch_size\": 1, \"old_count\": 3}" >/dev/null &&
	before=$(images_named web | wc -l) &&
	test_expect_code 5 "$KILN" release web.json --template tpl.json 2>err &&
	grep -q "ci-runner-3" err &&
	test "$(images_named web | wc -l)" = "$before" &&
	moto_cli ssm delete-parameter --name /kiln/fleets/web/lock
'

test_done
