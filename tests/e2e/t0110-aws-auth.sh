#!/bin/bash
test_description='kiln against moto with signature checking on: the right secret works, a wrong one
fails with one clear line'
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null 2>&1 || skip_all "no jq"
command -v aws >/dev/null 2>&1 || skip_all "no aws CLI (it creates the IAM user)"

# moto checks SigV4 after its first three actions, and then also evaluates IAM
# policies: those three create a user, give it an allow-all policy and a key.
start_moto INITIAL_NO_AUTH_ACTION_COUNT=3

AMI=ami-03cf127a

test_expect_success 'set up: an IAM user with an allow-all policy and an access key' '
	aws_cli iam create-user --user-name kiln >/dev/null &&
	aws_cli iam put-user-policy --user-name kiln --policy-name everything --policy-document \
		"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}" &&
	aws_cli iam create-access-key --user-name kiln >key.json &&
	KEY_ID=$(jq -r .AccessKey.AccessKeyId key.json) &&
	SECRET=$(jq -r .AccessKey.SecretAccessKey key.json) &&
	test -n "$KEY_ID" && test -n "$SECRET" &&
	export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$SECRET
'

test_expect_success 'checking is on: the set-up keys no longer work' '
	! AWS_ACCESS_KEY_ID=AKIAKILNE2ETEST00000 aws_cli sts get-caller-identity 2>err &&
	grep -i "InvalidClientTokenId\|security token" err
'

test_expect_success 'set up: an image kiln built, made with the new key' '
	I=$(aws_cli ec2 run-instances --image-id $AMI --instance-type t3.micro --count 1 |
		jq -r ".Instances[0].InstanceId") &&
	aws_cli ec2 stop-instances --instance-ids $I >/dev/null &&
	IMG=$(aws_cli ec2 create-image --instance-id $I --name web-v7 --tag-specifications \
		"ResourceType=image,Tags=[{Key=kiln:image,Value=web},{Key=kiln:version,Value=7}]" |
		jq -r .ImageId) &&
	test -n "$IMG"
'

test_expect_success 'right secret: kiln whoami names the user' '
	"$KILN" whoami >out 2>err &&
	grep "^arn  *arn:aws:iam::123456789012:user/kiln$" out &&
	grep "^account  *123456789012$" out &&
	test_line_count = 0 err
'

test_expect_success 'right secret: kiln images list shows the image' '
	"$KILN" images list >out 2>err &&
	grep "^web  *7  *$IMG  *available " out &&
	"$KILN" images list --json | jq -e "length == 1 and .[0].id == \"$IMG\""
'

# check_auth_failure CMD...: exit 1, one error line naming the rejection, no retry, no secret
check_auth_failure() {
	test_expect_code 1 "$@" >out 2>err || return 1
	test_line_count = 0 out &&
	grep -c "^kiln: error: " err >n && echo 1 >one && test_cmp one n &&
	grep "^kiln: error: .*AWS rejected the credentials: .*(\(AuthFailure\|SignatureDoesNotMatch\|InvalidClientTokenId\))$" err &&
	! grep -v "^kiln: \(error\|hint\): " err &&
	! grep -e "$SECRET" -e "wrong-secret" -e "Signature=" err
}

test_expect_success 'wrong secret: kiln whoami fails with one clear line' '
	AWS_SECRET_ACCESS_KEY=wrong-secret check_auth_failure "$KILN" whoami &&
	grep SignatureDoesNotMatch err
'

test_expect_success 'wrong secret: kiln images list fails with one clear line' '
	AWS_SECRET_ACCESS_KEY=wrong-secret check_auth_failure "$KILN" images list &&
	grep AuthFailure err
'

test_expect_success 'wrong secret: nothing is retried' '
	AWS_SECRET_ACCESS_KEY=wrong-secret test_expect_code 1 "$KILN" images list --verbose 2>err &&
	! grep -i retrying err
'

test_expect_success 'an access key moto never issued fails the same way' '
	AWS_ACCESS_KEY_ID=AKIAUNKNOWNKEY000000 check_auth_failure "$KILN" whoami
'

test_expect_success 'wrong secret with --json: the error event carries the code' '
	AWS_SECRET_ACCESS_KEY=wrong-secret test_expect_code 1 "$KILN" whoami --json >out 2>err &&
	jq -e "select(.event == \"error\") | .kind == \"authentication\" and .cloud_code == \"SignatureDoesNotMatch\" and .exit_code == 1" out &&
	# the request id, from the reply header when the body has none
	jq -e "select(.event == \"error\") | .request_id | length > 10" out
'

test_expect_success 'no credentials at all: exit 2 and one line naming what to set' '
	(unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY &&
	 test_expect_code 2 "$KILN" whoami >out 2>err) &&
	test_line_count = 1 err &&
	grep "^kiln: error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" err
'

test_done
