#!/bin/bash
test_description='the aws provider through the fault-injecting front: every call still ends in the
right state, and a retried create recognises its own resource'
. "$(dirname "$0")/lib.sh"

[ -x "$KILN_AWS_DRIVER" ] || skip_all "no kiln-aws-driver at '$KILN_AWS_DRIVER'"
command -v jq >/dev/null 2>&1 || skip_all "no jq"
command -v aws >/dev/null 2>&1 || skip_all "no aws CLI (it sets up and inspects moto)"
command -v ssh-keygen >/dev/null 2>&1 || skip_all "no ssh-keygen"

start_moto
start_front

# One request in five is faulted, before moto (throttling, 500, a dropped
# connection, latency) or after it acted (the reply is lost). Three attempts,
# the SDKs' default, lose about one call in two hundred at that rate; a real
# service is not that bad. Ten attempts make a lost call a one-in-ten-million
# event, so a failure here is kiln's and not the dice's.
export AWS_MAX_ATTEMPTS=10

# moto_cli ...: the AWS CLI straight to moto, never faulted: set-up and the final state
moto_cli() {
	AWS_ENDPOINT_URL=$MOTO_URL aws --output json "$@"
}

drv() {
	"$KILN_AWS_DRIVER" "$@" 2>>driver.log
}

AMI=ami-03cf127a
ROUNDS=3

test_expect_success 'set up: a target group, a key; the front faults one request in five' '
	VPC=$(moto_cli ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r ".Vpcs[0].VpcId") &&
	TG=$(moto_cli elbv2 create-target-group --name web --protocol HTTP --port 80 --vpc-id $VPC |
		jq -r ".TargetGroups[0].TargetGroupArn") &&
	ssh-keygen -q -t ed25519 -N "" -C kiln-e2e -f key &&
	front_config "{\"seed\": 7, \"fault_rate\": 0.2,
		\"faults_before\": [\"throttle\", \"500\", \"drop\", \"latency\"],
		\"faults_after\": [\"lost_response\"], \"latency_ms\": 300,
		\"client_token_idempotency\": true, \"dependency_violation_s\": 5}" &&
	front_stats | jq -e ".total == 0"
'

# Besides the random faults, each round scripts one fault on each create, so
# that every "was that my resource?" path is taken whatever the dice say:
# a reply lost after moto acted (round 1), a failure before it did (round 2),
# and a mix (round 3).
script_1='[{"action": "ec2:ImportKeyPair", "fault": "lost_response"},
	{"action": "ec2:CreateSecurityGroup", "fault": "lost_response"},
	{"action": "ec2:AuthorizeSecurityGroupIngress", "fault": "lost_response"},
	{"action": "ec2:RunInstances", "fault": "lost_response"},
	{"action": "ec2:CreateImage", "fault": "lost_response"},
	{"action": "ssm:PutParameter", "fault": "lost_response"},
	{"action": "ec2:TerminateInstances", "fault": "lost_response"},
	{"action": "ec2:DeleteSecurityGroup", "fault": "lost_response", "skip": 1}]'
script_2='[{"action": "ec2:ImportKeyPair", "fault": "drop"},
	{"action": "ec2:CreateSecurityGroup", "fault": "500"},
	{"action": "ec2:RunInstances", "fault": "drop"},
	{"action": "ec2:CreateImage", "fault": "500"},
	{"action": "ssm:PutParameter", "fault": "throttle", "count": 2},
	{"action": "ec2:DescribeInstances", "fault": "reset"},
	{"action": "elasticloadbalancing:RegisterTargets", "fault": "503"}]'
script_3='[{"action": "ec2:CreateImage", "fault": "drop"},
	{"action": "ec2:CreateImage", "fault": "lost_response", "skip": 1},
	{"action": "ec2:RunInstances", "fault": "lost_response", "skip": 1},
	{"action": "elasticloadbalancing:DeregisterTargets", "fault": "lost_response"},
	{"action": "ec2:DeleteKeyPair", "fault": "lost_response"},
	{"action": "ec2:CreateTags", "fault": "lost_response"},
	{"action": "ssm:PutParameter", "fault": "lost_response", "skip": 1}]'

# round N: one build's worth of calls, as the builder and a rollout make them
round() {
	local r=$1 b=b-fault-$1 ids ids2 snaps sg img script
	eval "script=\$script_$r"
	front_config "$(curl -sf "$FRONT_URL/__front/config" |
		jq -c --argjson s "$script" ".seed = $((7 + r)) | .fault_script = \$s")" &&
	drv keypair-import kiln-$b key.pub kiln:build-id=$b &&
	drv firewall-create kiln-$b 22 203.0.113.7/32 kiln:build-id=$b >fw.$r.json &&
	sg=$(jq -r .id fw.$r.json) &&
	drv launch $AMI t3.micro 2 tok-$b sg=$sg key=kiln-$b kiln:build-id=$b >launch.$r.json &&
	ids=$(jq -r ".[].id" launch.$r.json | sort | tr "\n" " ") &&
	# the same token again: the same two instances, none launched
	drv launch $AMI t3.micro 2 tok-$b sg=$sg key=kiln-$b kiln:build-id=$b >launch2.$r.json &&
	ids2=$(jq -r ".[].id" launch2.$r.json | sort | tr "\n" " ") &&
	test "$ids" = "$ids2" &&
	set -- $ids &&
	drv describe kiln:build-id=$b >desc.$r.json &&
	test "$(jq length desc.$r.json)" = 2 &&
	drv stop $1 &&
	drv image-create $1 web-v$r kiln:image=web kiln:version=$r kiln:build-id=$b >img.$r.json &&
	img=$(jq -r .id img.$r.json) &&
	drv images id=$img >imgs.$r.json &&
	snaps=$(jq -r ".[0].snapshots[]" imgs.$r.json) &&
	drv tag $snaps -- kiln:image=web kiln:version=$r kiln:build-id=$b &&
	drv record-create /kiln/images/web/versions/$r "{\"owner\":\"$b\"}" &&
	drv record-put /kiln/fleets/web/state "{\"image_id\":\"$img\"}" &&
	drv lb-register tg "$TG" $2 &&
	drv lb-health tg "$TG" $2 >health.$r.json &&
	test "$(jq -r ".\"$2\".health" health.$r.json)" = healthy &&
	drv lb-deregister tg "$TG" $2 &&
	drv terminate $ids &&
	drv firewall-delete $sg 60000 &&
	drv keypair-delete kiln-$b &&
	drv find kiln:build-id=$b >left.$r.json &&
	jq -r "map(.kind) | sort | join(\",\")" left.$r.json >kinds.$r &&
	echo "image,snapshot" >expect && test_cmp expect kinds.$r
}

for r in $(seq $ROUNDS); do
	test_expect_success "round $r: a build's calls through the faults" "round $r"
done

test_expect_success 'the faults happened: every kind, and the creates were settled by looking' '
	front_stats >stats.json &&
	jq -e ".faults | .lost_response >= 10 and .drop >= 3 and .reset >= 1 and .throttle >= 2
		and .[\"500\"] >= 2 and .[\"503\"] >= 1 and .dependency_violation >= 3" stats.json &&
	jq -e ".client_token_replays >= 3" stats.json &&
	test "$(grep -c "retrying" driver.log)" -ge 20 &&
	grep "create image .web-v2.: .*InternalError.*; trying again" driver.log
'

test_expect_success 'moto: one launch per token, every instance terminated' '
	moto_cli ec2 describe-instances >all.json &&
	jq -r "[.Reservations[].Instances[]] | length" all.json >n &&
	echo $((2 * ROUNDS)) >expect && test_cmp expect n &&
	jq -e "[.Reservations[].Instances[] | .State.Name] | all(. == \"terminated\")" all.json &&
	for r in $(seq $ROUNDS); do
		test "$(jq "[.Reservations[].Instances[] | select(.Tags[]? | .Key == \"kiln:build-id\" and .Value == \"b-fault-$r\")] | length" all.json)" = 2 ||
		return 1
	done
'

test_expect_success 'moto: one image per version, no duplicates from a lost CreateImage' '
	moto_cli ec2 describe-images --owners self >images.json &&
	jq -r "[.Images[].Name] | sort | join(\",\")" images.json >names &&
	echo "web-v1,web-v2,web-v3" >expect && test_cmp expect names &&
	jq -e "all(.Images[]; any(.Tags[]; .Key == \"kiln:version\"))" images.json
'

test_expect_success 'moto: no key pair, no security group left; the records hold what was written' '
	moto_cli ec2 describe-key-pairs | jq -e ".KeyPairs | length == 0" &&
	moto_cli ec2 describe-security-groups --filters Name=group-name,Values="kiln-*" |
		jq -e ".SecurityGroups | length == 0" &&
	moto_cli ssm get-parameters-by-path --path /kiln --recursive >params.json &&
	jq -r "[.Parameters[].Name] | sort | join(\",\")" params.json >names &&
	echo "/kiln/fleets/web/state,/kiln/images/web/versions/1,/kiln/images/web/versions/2,/kiln/images/web/versions/3" >expect &&
	test_cmp expect names &&
	jq -e ".Parameters[] | select(.Name == \"/kiln/images/web/versions/2\") | .Value == \"{\\\"owner\\\":\\\"b-fault-2\\\"}\" and .Version == 1" params.json
'

test_expect_success 'kiln images list through the faults: the three versions, newest first' '
	"$KILN" images list --json >list.json &&
	jq -r "map(\"\(.name)@\(.version)\") | join(\",\")" list.json >got &&
	echo "web@3,web@2,web@1" >expect && test_cmp expect got &&
	"$KILN" whoami --json | jq -e ".account == \"123456789012\""
'

test_expect_success 'a record created twice with different values is a conflict, faults or not' '
	drv record-create /kiln/fleets/web/lock "{\"holder\":\"a\"}" &&
	test_must_fail drv record-create /kiln/fleets/web/lock "{\"holder\":\"b\"}" &&
	grep "error: conflict: ParameterAlreadyExists" driver.log
'

test_expect_success 'DependencyViolation outlasting the timeout: a timeout, then deleted later' '
	front_config "{\"dependency_violation_s\": 4}" &&
	drv firewall-create kiln-dv 22 203.0.113.7/32 kiln:build-id=dv >fw.json &&
	sg=$(jq -r .id fw.json) &&
	test_must_fail drv firewall-delete $sg 1500 &&
	grep "error: timeout: DependencyViolation: security group .$sg. is still in use" driver.log &&
	drv firewall-delete $sg 30000 &&
	! moto_cli ec2 describe-security-groups --group-ids $sg 2>/dev/null
'

test_expect_success 'a signal during a slow request: kiln stops at once with exit 4' '
	front_config "{\"fault_rate\": 1, \"faults_before\": [\"latency\"], \"faults_after\": [],
		\"latency_ms\": 30000}" &&
	start=$(date +%s) &&
	{ "$KILN" whoami >out 2>err & pid=$!; } &&
	sleep 1 &&
	kill -TERM $pid &&
	{ wait $pid; rc=$?; } &&
	test $rc = 4 &&
	test $(($(date +%s) - start)) -le 6 &&
	grep "^kiln: error: .*interrupted" err &&
	front_config "{}"
'

test_done
