#!/bin/bash
# scripts/demo-aws.sh KILN: kiln's aws provider against moto, an AWS emulator
# (`make demo-aws`; `make demo` is the local provider's whole flow).
#
# Starts moto on loopback, inside a network namespace of its own when run as
# root, and shows kiln talking to it: who it is, the images it knows, how a
# name resolves to its newest version. Servers it starts are stopped by PID
# when it ends.
set -eu

kiln=${1:?usage: scripts/demo-aws.sh PATH/TO/kiln}
case "$kiln" in /*) ;; *) kiln="$(pwd)/$kiln" ;; esac
[ -x "$kiln" ] || { echo "demo: no kiln binary at '$kiln' (make release builds it)" >&2; exit 1; }

if [ -z "${KILN_DEMO_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
	export KILN_DEMO_NETNS=1
	exec unshare --net -- "$BASH" "$0" "$kiln"
fi
[ -n "${KILN_DEMO_NETNS:-}" ] && ip link set lo up

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cat <<'EOF'
kiln against moto (an AWS emulator, on loopback only): who kiln is talking to, and the
images it knows about. `make demo` shows the whole flow on the local provider.
EOF

for tool in moto_server curl python3; do
	command -v "$tool" >/dev/null 2>&1 || { echo "demo: '$tool' is needed and not on PATH" >&2; exit 1; }
done

work=$(mktemp -d)
moto_pid=
cleanup() {
	if [ -n "$moto_pid" ]; then
		kill "$moto_pid" 2>/dev/null || true
		wait "$moto_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 150); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/data.json" && break
	sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/data.json" ||
	{ echo "demo: moto did not start; its log:" >&2; tail "$work/moto.log" >&2; exit 1; }

# everything points at moto; nothing from the caller's AWS setup is used
export HOME="$work" KILN_STATE_DIR="$work/state"
export AWS_SHARED_CREDENTIALS_FILE="$work/credentials" AWS_CONFIG_FILE="$work/config"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=AKIAKILNDEMO00000000 AWS_SECRET_ACCESS_KEY=kilnDemoSecret
unset AWS_PROFILE AWS_SESSION_TOKEN KILN_PROVIDER

say "moto is listening on 127.0.0.1:$port (pid $moto_pid)"

say "who kiln talks to"
run "$kiln" whoami

say "the images kiln built: none yet"
run "$kiln" images list

if command -v aws >/dev/null 2>&1; then
	say "an image made by hand with the AWS CLI, tagged the way kiln tags what it builds"
	ami=ami-03cf127a # one of moto's built-in images
	inst=$(aws ec2 run-instances --image-id "$ami" --instance-type t3.micro --query 'Instances[0].InstanceId' --output text)
	aws ec2 stop-instances --instance-ids "$inst" >/dev/null
	for v in 1 2; do
		aws ec2 create-image --instance-id "$inst" --name "web-v$v" --tag-specifications \
			"ResourceType=image,Tags=[{Key=kiln:image,Value=web},{Key=kiln:version,Value=$v},{Key=kiln:built-at,Value=$(date -u +%Y-%m-%dT%H:%M:%SZ)}]" \
			--query ImageId --output text
	done
	say "kiln lists them, newest version first"
	run "$kiln" images list
	run "$kiln" images list web --json
	say "and resolves a name to its newest version"
	run "$kiln" images show web
else
	echo "(no aws CLI here: skipping the part that makes an image by hand)"
fi

say "done: moto is stopped; 'make check' runs every test, the AWS ones against moto too"
