# lib-build.sh: what the builder's end-to-end suites (t02xx-build-*) share.
#
# Sourced by each suite (git's t/lib-httpd.sh habit): re-runs the suite
# inside its own network namespace holding only loopback, starts moto (and
# optionally the test front) and a real sshd on loopback standing in for
# the build instance, and gives small helpers to ask moto what is left.
#
# The sshd accepts exactly the key pairs that exist in moto: its
# AuthorizedKeysCommand asks moto (DescribeKeyPairs IncludePublicKey) with
# curl, so kiln's freshly imported key works and nothing else does. sshd
# refuses a command in a world-writable directory such as /tmp, hence
# "/bin/sh SCRIPT" (../shared/notes/aws-emulator-facts.md).
#
# Every server is started in the background, recorded by pid, and stopped
# by pid in the EXIT trap; the namespace takes anything left with it.
#
#	. "$(dirname "$0")/lib-build.sh"
#	build_setup            # moto + sshd (+ front if BUILD_FRONT=1)
#	write_template t.json '"tags": {"a": "b"}' '[{"type":"shell","inline":["true"]}]'
#	kiln build t.json
#	assert_no_leftovers

set -u

src=${KILN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KILN=${KILN:-$src/build/asan/cli/kiln}
py=${KILN_PYTHON:-python3}
# moto's built-in Amazon Linux image: its id is stable across moto starts
SOURCE_AMI=${SOURCE_AMI:-ami-760aaa0f}

skip() {
	echo "skipped: $*"
	exit 77
}

command -v moto_server >/dev/null 2>&1 || skip "no moto_server on PATH"
[ -x /usr/sbin/sshd ] || skip "no /usr/sbin/sshd (openssh-server)"
[ "$(id -u)" = 0 ] || skip "sshd needs root here (privilege separation, any user)"
[ -x "$KILN" ] || skip "no kiln binary at $KILN"

# Into a network namespace of our own, once.
if [ -z "${KILN_E2E_NETNS:-}" ]; then
	export KILN_E2E_NETNS=1
	exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-e2e-build.XXXXXX")
PIDS=""
failures=0
tests=0

cleanup_servers() {
	local p
	for p in $PIDS; do
		kill "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	if [ "$failures" -eq 0 ] && [ -z "${KILN_E2E_KEEP:-}" ]; then
		rm -rf "$T"
	else
		echo "# left $T for inspection"
	fi
}
trap cleanup_servers EXIT

free_port() {
	"$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL
	local i
	for i in $(seq 100); do
		curl -sf -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "not answering: $1" >&2
	return 1
}

start_moto() {
	MOTO_PORT=$(free_port)
	MOTO_ENABLE_RECORDING=${MOTO_RECORD:-false} MOTO_RECORDER_FILEPATH=$T/moto-record.jsonl \
		moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$T/moto.log" 2>&1 &
	PIDS="$PIDS $!"
	MOTO=http://127.0.0.1:$MOTO_PORT
	wait_http "$MOTO/moto-api/data.json"
}

# The fault-injecting front (tests/front) between kiln and moto; config JSON optional.
start_front() {
	local cfg=${1:-}
	: >"$T/front.out"
	"$py" "$src/tests/front/front.py" --listen 127.0.0.1:0 --upstream "$MOTO" \
		--log "$T/front.jsonl" ${cfg:+--config "$cfg"} >"$T/front.out" 2>"$T/front.err" &
	PIDS="$PIDS $!"
	local i
	for i in $(seq 100); do
		FRONT_PORT=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$T/front.out")
		[ -n "$FRONT_PORT" ] && break
		sleep 0.1
	done
	[ -n "$FRONT_PORT" ] || { cat "$T/front.err" >&2; return 1; }
	FRONT=http://127.0.0.1:$FRONT_PORT
}

# A real sshd on loopback accepting only the key pairs moto holds.
start_sshd() {
	SSHD_PORT=$(free_port)
	mkdir -p "$T/sshd" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$T/sshd/host_ed25519" >/dev/null
	cat >"$T/sshd/keys.sh" <<EOF
# AuthorizedKeysCommand: every public key of a key pair in moto, one a line
curl -s --max-time 5 -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \\
	--data 'Action=DescribeKeyPairs&Version=2016-11-15&IncludePublicKey=true' $MOTO/ |
	tr '<' '\n' | sed -n 's/^publicKey>//p'
EOF
	cat >"$T/sshd/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $T/sshd/host_ed25519
PidFile $T/sshd/sshd.pid
AuthorizedKeysFile none
AuthorizedKeysCommand /bin/sh $T/sshd/keys.sh
AuthorizedKeysCommandUser root
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
MaxStartups 100
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
	/usr/sbin/sshd -D -e -f "$T/sshd/sshd_config" 2>"$T/sshd/log" &
	PIDS="$PIDS $!"
	local i
	for i in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$SSHD_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$T/sshd/log" >&2
	return 1
}

# moto, sshd, and the front when BUILD_FRONT is set (its config in BUILD_FRONT_CONFIG).
build_setup() {
	start_moto || exit 1
	start_sshd || exit 1
	ENDPOINT=$MOTO
	if [ -n "${BUILD_FRONT:-}" ]; then
		start_front "${BUILD_FRONT_CONFIG:-}" || exit 1
		ENDPOINT=$FRONT
	fi
	export AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
		AWS_REGION=us-east-1 KILN_STATE_DIR=$T/state NO_COLOR=1
	unset AWS_PROFILE AWS_DEFAULT_REGION
	mkdir -p "$T/work"
	cd "$T/work" || exit 1
}

# write_template FILE EXTRA_KEYS PROVISIONERS_JSON: a template of image "web" from SOURCE_AMI
# reached through the loopback sshd; EXTRA_KEYS (may be empty) are more top-level keys.
write_template() {
	local file=$1 extra=${2:-} prov=${3:-'[{"type": "shell", "inline": ["echo hello from {{version}}"]}]'}
	cat >"$file" <<EOF
{
  "name": "${IMAGE_NAME:-web}",
  "source_image": "$SOURCE_AMI",
  "instance_type": "t3.micro",
  "ssh_username": "root",
  "ssh_host": "127.0.0.1",
  "ssh_port": $SSHD_PORT,
  "ssh_timeout_s": 30,
  ${extra:+$extra,}
  "provisioners": $prov
}
EOF
}

# ---- asking moto directly (not through kiln, not through the front) ----

ec2() { # QUERY ("Action=...&..."): the XML reply on stdout
	curl -s -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \
		--data "Version=2016-11-15&$1" "$MOTO/"
}

ssm() { # TARGET JSON
	curl -s -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0' \
		-H "X-Amz-Target: AmazonSSM.$1" -H 'Content-Type: application/x-amz-json-1.1' \
		--data "$2" "$MOTO/"
}

# The values of <TAG> elements in XML on stdin, one a line.
xml_values() {
	tr '<' '\n' | sed -n "s/^$1>//p"
}

live_instances() {
	ec2 'Action=DescribeInstances&Filter.1.Name=instance-state-name&Filter.1.Value.1=pending&Filter.1.Value.2=running&Filter.1.Value.3=stopping&Filter.1.Value.4=stopped' |
		xml_values instanceId
}

kiln_keypairs() {
	ec2 'Action=DescribeKeyPairs' | xml_values keyName | grep '^kiln-' || true
}

kiln_groups() {
	ec2 'Action=DescribeSecurityGroups' | xml_values groupName | grep '^kiln-' || true
}

# Images named NAME-v*, "ID NAME STATE" a line.
images_named() {
	ec2 "Action=DescribeImages&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=$1-v*" |
		"$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = {"e": root.tag.split("}")[0].strip("{")}
for it in root.find("e:imagesSet", ns) or []:
    print(it.findtext("e:imageId", namespaces=ns), it.findtext("e:name", namespaces=ns),
          it.findtext("e:imageState", namespaces=ns))'
}

# Tags of a resource id as KEY=VALUE lines.
tags_of() {
	ec2 "Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1=$1" |
		"$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = {"e": root.tag.split("}")[0].strip("{")}
for it in root.find("e:tagSet", ns) or []:
    print("%s=%s" % (it.findtext("e:key", namespaces=ns), it.findtext("e:value", namespaces=ns)))'
}

snapshots_of() { # IMAGE_ID
	ec2 "Action=DescribeImages&ImageId.1=$1" | xml_values snapshotId
}

# ---- assertions (git test-lib style: say what failed, count, go on) ----

ok() {
	tests=$((tests + 1))
	echo "ok $tests - $*"
}

not_ok() {
	tests=$((tests + 1))
	failures=$((failures + 1))
	echo "not ok $tests - $*"
}

check() { # DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# After every scenario: no instance running, no kiln key pair or security group left.
assert_no_leftovers() {
	local what=${1:-}
	local i k g
	i=$(live_instances)
	k=$(kiln_keypairs)
	g=$(kiln_groups)
	if [ -z "$i$k$g" ]; then
		ok "nothing left behind${what:+ ($what)}"
	else
		not_ok "nothing left behind${what:+ ($what)}: instances [$i] key pairs [$k] groups [$g]"
	fi
}

has_tag() { # LINES KEY=VALUE|KEY=
	printf '%s\n' "$1" | grep -q -- "^$2"
}

finish() {
	echo "1..$tests"
	if [ "$failures" -ne 0 ]; then
		echo "# $failures of $tests failed (logs in $T)"
		exit 1
	fi
	exit 0
}
