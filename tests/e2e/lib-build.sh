# lib-build.sh: what the builder's end-to-end suites (t02xx-build-*) add to
# lib.sh (git's t/lib-httpd.sh habit): a real sshd on loopback standing in
# for the build instance, templates, questions to moto, and checks.
#
# The sshd accepts exactly the key pairs that exist in moto: its
# AuthorizedKeysCommand asks moto (DescribeKeyPairs IncludePublicKey) with
# curl, so kiln's freshly imported key works and nothing else does. sshd
# refuses a command in a world-writable directory such as /tmp, hence
# "/bin/sh SCRIPT" (../shared/notes/aws-emulator-facts.md).
#
#	. "$(dirname "$0")/lib-build.sh"
#	build_setup            # moto + sshd (+ the front if BUILD_FRONT=1)
#	write_template t.json '"tags": {"a": "b"}' '[{"type":"shell","inline":["true"]}]'
#	"$KILN" build t.json >out 2>err
#	check "it built web@1" grep -q '^web@1 ami-' out
#	assert_no_leftovers
#	finish
#
# check DESCRIPTION CMD... counts in lib.sh's tally (ok N / not ok N), so
# the suites read top to bottom like a build's log; finish is test_done.

. "$(dirname "$0")/lib.sh"

py=python3
# moto's built-in Amazon Linux image: its id is stable across moto starts
SOURCE_AMI=${SOURCE_AMI:-ami-760aaa0f}
# the suites' scratch space: lib.sh's trash directory (kept when a check fails)
T=$TRASH_DIRECTORY

[ -x /usr/sbin/sshd ] || skip_all "no /usr/sbin/sshd (openssh-server)"
command -v ssh-keygen >/dev/null 2>&1 || skip_all "no ssh-keygen"

# A real sshd on loopback accepting only the key pairs moto holds.
start_sshd() {
	SSHD_PORT=$(free_port)
	mkdir -p "$T/sshd" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$T/sshd/host_ed25519" >/dev/null
	cat >"$T/sshd/keys.sh" <<EOF
# AuthorizedKeysCommand: every public key of a key pair in moto, one a line
curl -s --max-time 5 -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \\
	--data 'Action=DescribeKeyPairs&Version=2016-11-15&IncludePublicKey=true' $MOTO_URL/ |
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
	track_pid $!
	local i
	for i in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$SSHD_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$T/sshd/log" >&2
	return 1
}

# moto, the sshd, and the front when BUILD_FRONT is set (its config file in BUILD_FRONT_CONFIG).
build_setup() {
	start_moto
	MOTO=$MOTO_URL
	start_sshd || exit 1
	if [ -n "${BUILD_FRONT:-}" ]; then
		start_front "${BUILD_FRONT_CONFIG:-}"
		FRONT=$FRONT_URL
	fi
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
		--data "Version=2016-11-15&$1" "$MOTO_URL/"
}

ssm() { # TARGET JSON
	curl -s -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0' \
		-H "X-Amz-Target: AmazonSSM.$1" -H 'Content-Type: application/x-amz-json-1.1' \
		--data "$2" "$MOTO_URL/"
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

# ---- checks, counted in lib.sh's tally ----

check() { # DESCRIPTION COMMAND...
	local what=$1
	shift
	test_count=$((test_count + 1))
	if "$@"; then
		test_passed=$((test_passed + 1))
		say "ok $test_count - $what"
	else
		test_failed=$((test_failed + 1))
		say "not ok $test_count - $what"
	fi
}

# After every scenario: no instance running, no kiln key pair or security group left.
assert_no_leftovers() {
	local what=${1:-} i k g
	i=$(live_instances)
	k=$(kiln_keypairs)
	g=$(kiln_groups)
	check "nothing left behind${what:+ ($what)}${i:+: instances $i}${k:+: key pairs $k}${g:+: groups $g}" \
		[ -z "$i$k$g" ]
}

has_tag() { # LINES KEY=VALUE|KEY=
	printf '%s\n' "$1" | grep -q -- "^$2"
}

finish() {
	# the loopback "instance" is this machine: remove the scripts of provisioning
	# runs that were killed or failed (a real instance goes with them), found by
	# the trash directory their commands name
	local f
	for f in /tmp/kiln-script-*.sh; do
		[ -f "$f" ] && grep -qF -- "$TRASH_DIRECTORY" "$f" && rm -f -- "$f"
	done
	cd "$TRASH_DIRECTORY" || true
	test_done
}
