#!/bin/bash
test_description='the credential chain end to end: AssumeRole and AssumeRoleWithWebIdentity against
moto STS, credential_process, and instance-role keys from an IMDSv2 stand-in on loopback; kiln whoami
names each source, and the keys each source gave are the ones that sign the EC2 calls'
. "$(dirname "$0")/lib.sh"

[ -x "$KILN_AWS_DRIVER" ] || skip_all "no kiln-aws-driver at '$KILN_AWS_DRIVER'"
command -v jq >/dev/null 2>&1 || skip_all "no jq"

# moto records every request, headers and body, so the tests can see which
# access key signed what
REC="$TRASH_DIRECTORY/moto.rec.jsonl"
start_moto MOTO_ENABLE_RECORDING=true "MOTO_RECORDER_FILEPATH=$REC"

# start_imds ARGS...: tests/imds/imds.py on a free loopback port; sets IMDS_URL
start_imds() {
	local fifo="$TRASH_DIRECTORY/imds.ready" line
	rm -f "$fifo"
	mkfifo "$fifo"
	python3 "$KILN_SOURCE_DIR/tests/imds/imds.py" --listen 127.0.0.1:0 --log "$TRASH_DIRECTORY/imds.jsonl" \
		"$@" >"$fifo" 2>"$TRASH_DIRECTORY/imds.log" &
	IMDS_PID=$!
	track_pid "$IMDS_PID"
	if ! read -r -t 30 line <"$fifo" || [ "${line%% *}" != ready ]; then
		echo "error: the IMDS stand-in did not start" >&2
		cat "$TRASH_DIRECTORY/imds.log" >&2
		exit 1
	fi
	IMDS_URL="http://127.0.0.1:${line#ready }"
}

imds_stat() {
	curl -sf "$IMDS_URL/__imds/stats" | jq -r ".$1"
}

# keys ACTION: the access key ids that signed each recorded request of ACTION, one a line
# ("-" for an unsigned one), in the order moto saw them
keys() {
	python3 - "$REC" "$1" <<-'EOF'
	import base64, json, re, sys
	for line in open(sys.argv[1]):
	    r = json.loads(line)
	    body = r.get("body") or ""
	    if r.get("body_encoded"):
	        body = base64.b64decode(body).decode("utf-8", "replace")
	    if not re.search(r"(^|&)Action=%s(&|$)" % re.escape(sys.argv[2]), body):
	        continue
	    auth = {k.lower(): v for k, v in r["headers"].items()}.get("authorization", "")
	    m = re.search(r"Credential=([^/]+)/", auth)
	    print(m.group(1) if m else "-")
	EOF
}

# param ACTION NAME: NAME's value in the last recorded ACTION request
param() {
	python3 - "$REC" "$1" "$2" <<-'EOF'
	import base64, json, re, sys, urllib.parse
	last = None
	for line in open(sys.argv[1]):
	    r = json.loads(line)
	    body = r.get("body") or ""
	    if r.get("body_encoded"):
	        body = base64.b64decode(body).decode("utf-8", "replace")
	    if re.search(r"(^|&)Action=%s(&|$)" % re.escape(sys.argv[2]), body):
	        last = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
	print((last or {}).get(sys.argv[3], "<absent>"))
	EOF
}

cached_key() {
	jq -r .Credentials.AccessKeyId "$KILN_STATE_DIR"/aws/cache/*.json | sort -u
}

BASE_SECRET=kilnBaseProfileSecret000000000000000000
mkdir -p .aws
cat >.aws/credentials <<EOF
[base]
aws_access_key_id = AKIAKILNBASE00000000
aws_secret_access_key = $BASE_SECRET
EOF
cat >.aws/config <<EOF
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
role_session_name = kiln-e2e

[profile chained]
role_arn = arn:aws:iam::123456789012:role/second
source_profile = dev
external_id = kiln-ext-7
duration_seconds = 900

[profile mfa]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/me

[profile proc]
credential_process = /bin/sh "$TRASH_DIRECTORY/helper.sh" --profile proc

[profile webid]
role_arn = arn:aws:iam::123456789012:role/ci-profile
web_identity_token_file = $TRASH_DIRECTORY/token
EOF

test_expect_success 'environment keys: whoami says environment' '
	"$KILN" whoami >out &&
	grep "^credentials  *environment$" out &&
	test "$(keys GetCallerIdentity | tail -1)" = AKIAKILNE2ETEST00000
'

unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

test_expect_success 'a profile with role_arn: AssumeRole with the source profile keys' '
	AWS_PROFILE=dev "$KILN" whoami >out 2>err &&
	grep "^arn  *arn:aws:sts::123456789012:assumed-role/dev/kiln-e2e$" out &&
	grep "^credentials  *assume-role arn:aws:iam::123456789012:role/dev via profile dev$" out &&
	test_line_count = 0 err &&
	test "$(keys AssumeRole)" = AKIAKILNBASE00000000 &&
	test "$(param AssumeRole RoleSessionName)" = kiln-e2e &&
	test "$(param AssumeRole RoleArn)" = arn:aws:iam::123456789012:role/dev &&
	ROLE_KEY=$(cached_key) &&
	case "$ROLE_KEY" in ASIA*) ;; *) false ;; esac &&
	test "$(keys GetCallerIdentity | tail -1)" = "$ROLE_KEY"
'

test_expect_success 'the cache is 0600 in a 0700 directory, like the CLI cache' '
	test "$(stat -c %a "$KILN_STATE_DIR"/aws/cache)" = 700 &&
	test "$(stat -c %a "$KILN_STATE_DIR"/aws/cache/*.json)" = 600
'

test_expect_success 'the role keys sign the EC2 calls; the next run takes them from the cache' '
	AWS_PROFILE=dev "$KILN_AWS_DRIVER" describe >out &&
	test "$(keys DescribeInstances | tail -1)" = "$ROLE_KEY" &&
	AWS_PROFILE=dev "$KILN" images list >out &&
	test "$(keys DescribeImages | tail -1)" = "$ROLE_KEY" &&
	# one AssumeRole for the three runs
	test "$(keys AssumeRole | wc -l)" = 1
'

test_expect_success 'a chain of roles: each link assumed with the keys of the one before' '
	AWS_PROFILE=chained "$KILN" whoami >out &&
	grep "^arn  *arn:aws:sts::123456789012:assumed-role/second/kiln-[0-9]*$" out &&
	grep "^credentials  *assume-role arn:aws:iam::123456789012:role/second via profile chained$" out &&
	test "$(keys AssumeRole | tail -1)" = "$ROLE_KEY" &&
	test "$(param AssumeRole RoleArn)" = arn:aws:iam::123456789012:role/second &&
	test "$(param AssumeRole ExternalId)" = kiln-ext-7 &&
	test "$(param AssumeRole DurationSeconds)" = 900
'

test_expect_success 'mfa_serial: not supported, exit 2, one line' '
	AWS_PROFILE=mfa test_expect_code 2 "$KILN" whoami >out 2>err &&
	test_line_count = 1 err &&
	grep "^kiln: error: profile .mfa. has mfa_serial, which is not supported" err
'

test_expect_success 'credential_process: its keys, without a shell' '
	cat >helper.sh <<-\EOF &&
	test "$1" = --profile || exit 9
	printf "{\"Version\": 1, \"AccessKeyId\": \"AKIAKILNPROCESS00001\", \"SecretAccessKey\": \"procSecret00000000000000000000000000000\", \"Expiration\": \"2099-01-01T00:00:00Z\"}"
	EOF
	AWS_PROFILE=proc "$KILN" whoami >out 2>err &&
	grep "^credentials  *credential_process of profile proc$" out &&
	test "$(keys GetCallerIdentity | tail -1)" = AKIAKILNPROCESS00001 &&
	AWS_PROFILE=proc "$KILN_AWS_DRIVER" describe >out &&
	test "$(keys DescribeInstances | tail -1)" = AKIAKILNPROCESS00001
'

test_expect_success 'credential_process that fails: exit 1, its status and stderr line' '
	cat >helper.sh <<-\EOF &&
	echo "helper: please run helper login" >&2
	exit 4
	EOF
	AWS_PROFILE=proc test_expect_code 1 "$KILN" whoami >out 2>err &&
	test_line_count = 1 err &&
	grep "exited with status 4: helper: please run helper login$" err
'

test_expect_success 'web identity from the environment: AssumeRoleWithWebIdentity, unsigned' '
	echo "eyJraWQiOiJrMSJ9.e2e-token.sig" >token &&
	AWS_WEB_IDENTITY_TOKEN_FILE=$PWD/token AWS_ROLE_ARN=arn:aws:iam::123456789012:role/ci \
		AWS_ROLE_SESSION_NAME=gha-run-42 "$KILN" whoami >out &&
	grep "^arn  *arn:aws:sts::123456789012:assumed-role/ci/gha-run-42$" out &&
	grep "^credentials  *web identity arn:aws:iam::123456789012:role/ci (AWS_WEB_IDENTITY_TOKEN_FILE)$" out &&
	test "$(keys AssumeRoleWithWebIdentity)" = - &&
	test "$(param AssumeRoleWithWebIdentity WebIdentityToken)" = eyJraWQiOiJrMSJ9.e2e-token.sig
'

test_expect_success 'web identity from a profile; its keys sign the EC2 calls' '
	AWS_PROFILE=webid "$KILN_AWS_DRIVER" describe >out &&
	AWS_PROFILE=webid "$KILN" whoami >out &&
	grep "^arn  *arn:aws:sts::123456789012:assumed-role/ci-profile/kiln-[0-9]*$" out &&
	grep "^credentials  *web identity arn:aws:iam::123456789012:role/ci-profile via profile webid$" out &&
	WEB_KEY=$(keys GetCallerIdentity | tail -1) &&
	test "$(keys DescribeInstances | tail -1)" = "$WEB_KEY" &&
	case "$WEB_KEY" in ASIA*) ;; *) false ;; esac
'

start_imds --role kiln-e2e-role --region eu-west-1 --expires-in 3600

test_expect_success 'the stand-in is strict: no token, no metadata (IMDSv1 refused)' '
	test "$(curl -s -o /dev/null -w "%{http_code}" "$IMDS_URL/latest/meta-data/placement/region")" = 401 &&
	test "$(curl -s -o /dev/null -w "%{http_code}" -X PUT "$IMDS_URL/latest/api/token")" = 400
'

unset AWS_EC2_METADATA_DISABLED AWS_REGION AWS_DEFAULT_REGION
export AWS_EC2_METADATA_SERVICE_ENDPOINT="$IMDS_URL"

test_expect_success 'nothing configured: the instance role from IMDSv2, and its region' '
	"$KILN" whoami >out 2>err &&
	grep "^credentials  *instance profile kiln-e2e-role (IMDSv2)$" out &&
	grep "^region  *eu-west-1$" out &&
	test_line_count = 0 err &&
	test "$(imds_stat token_puts)" -ge 1 &&
	test "$(imds_stat no_token)" = 1 &&
	test "$(imds_stat region_gets)" = 1 &&
	test "$(imds_stat credential_gets)" = 1 &&
	test "$(keys GetCallerIdentity | tail -1)" = "$(imds_stat "served[0]")"
'

test_expect_success 'instance-role keys that expire soon are fetched again before signing' '
	curl -sf -X POST -d "{\"expires_in\": 200}" "$IMDS_URL/__imds/config" >/dev/null &&
	before=$(imds_stat credential_gets) &&
	"$KILN_AWS_DRIVER" describe >out &&
	# the first keys had 200 s left, inside the 5-minute window: a second fetch,
	# and the second keys signed the call
	test "$(imds_stat credential_gets)" = $((before + 2)) &&
	test "$(keys DescribeInstances | tail -1)" = "$(imds_stat "served[-1]")" &&
	test "$(imds_stat no_token)" = 1
'

test_expect_success 'the environment still wins over the instance' '
	AWS_ACCESS_KEY_ID=AKIAKILNE2ETEST00000 AWS_SECRET_ACCESS_KEY=x "$KILN" whoami --json >out &&
	jq -e ".credential_source == \"environment\" and .region == \"eu-west-1\"" out
'

test_expect_success 'ECS container credentials: skipped, and said so' '
	AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc "$KILN" whoami >out 2>err &&
	grep "warning: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set, but kiln does not read ECS container credentials: skipped$" err &&
	grep "^credentials  *instance profile kiln-e2e-role (IMDSv2); ECS container credentials skipped$" out
'

test_expect_success 'AWS_EC2_METADATA_DISABLED=true: the service is never asked' '
	before=$(curl -sf "$IMDS_URL/__imds/stats") &&
	AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 test_expect_code 2 "$KILN" whoami 2>err &&
	test "$(curl -sf "$IMDS_URL/__imds/stats")" = "$before" &&
	test_line_count = 1 err &&
	grep "^kiln: error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" err
'

test_expect_success 'nothing anywhere and no service: exit 2, one line' '
	port=$(free_port) &&
	AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$port AWS_REGION=us-east-1 \
		test_expect_code 2 "$KILN" whoami >out 2>err &&
	test_line_count = 1 err &&
	grep "^kiln: error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" err &&
	grep "the instance metadata service at .http://127.0.0.1:$port. (2 attempts)" err &&
	AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$port test_expect_code 2 "$KILN" whoami 2>err &&
	test_line_count = 1 err &&
	grep "^kiln: error: no AWS region: set AWS_REGION" err
'

test_expect_success 'no secret in any output' '
	AWS_PROFILE=dev "$KILN" whoami --json -v >out 2>err &&
	cat out err >all &&
	for s in "$BASE_SECRET" procSecret00000000000000000000000000000 \
		$(jq -r ".Credentials.SecretAccessKey, .Credentials.SessionToken" "$KILN_STATE_DIR"/aws/cache/*.json); do
		! grep -F -e "$s" all || return 1
	done
'

test_done
