#!/bin/bash
# bench/packer-vs-kiln.sh: Debian's Packer 1.6.6 (amazon-ebs builder) and kiln
# on the same work, alternating, RUNS runs each (default 5):
#
#   same moto, reached through the test front (which counts every request);
#   same loopback sshd standing in for the instance, accepting exactly the
#   key pairs moto holds (AuthorizedKeysCommand asking moto);
#   same provisioners: a few shell commands and a SIZE_MB (50) MB file upload.
#
# Prints for both: median wall time, EC2 API calls (median), peak RSS
# (median of /usr/bin/time's "Maximum resident set size": the largest
# single process, which for Packer is one of its plugin processes or the
# core) and upload rate, measured the same way for every client at the
# receiving end: the destination file is watched from its first byte to its
# last; plus OpenSSH's `sftp` uploading the same file to the same sshd.
# Then kiln's targets: median wall <= 1/2 of Packer's, no more EC2 calls,
# peak RSS <= 1/4, upload >= 0.9 of OpenSSH's.
#
#   bench/packer-vs-kiln.sh                 # builds kiln (Release) if needed
#   RUNS=3 SIZE_MB=20 bench/packer-vs-kiln.sh
#   KILN=/path/to/kiln bench/packer-vs-kiln.sh
#
# Needs root (sshd), moto_server (the pyenv python3), packer (scripts/
# bootstrap.sh bench), openssh-server/-client. Runs in a network namespace
# of its own holding only loopback; stops what it starts by pid. The
# machine may be shared: the load average is printed before and after.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-5}
size_mb=${SIZE_MB:-50}
py=${KILN_PYTHON:-python3}
SOURCE_AMI=ami-760aaa0f

die() { echo "packer-vs-kiln: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "packer-vs-kiln: skipped: sshd needs root" >&2; exit 77; }
for c in moto_server packer /usr/sbin/sshd sftp ssh-keygen /usr/bin/time curl; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c (scripts/bootstrap.sh bench installs packer)"
done

if [ -z "${KILN:-}" ]; then
	export KILN=$src/build/release/cli/kiln
	echo "building kiln (Release) in build/release ..."
	cmake -S "$src" -B "$src/build/release" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null &&
		cmake --build "$src/build/release" -j 2 >/dev/null || die "cannot build kiln"
fi
[ -x "$KILN" ] || die "no kiln at $KILN"

if [ -z "${KILN_BENCH_NETNS:-}" ]; then
	export KILN_BENCH_NETNS=1
	exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up

T=$(mktemp -d /tmp/kiln-bench-packer.XXXXXX)
PIDS=""
finish() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap finish EXIT

free_port() {
	"$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
	local i
	for i in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
	return 1
}

# ---- moto, the front, the sshd ----
MOTO_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$T/moto.log" 2>&1 &
PIDS="$PIDS $!"
MOTO=http://127.0.0.1:$MOTO_PORT
wait_http "$MOTO/moto-api/data.json" || die "moto did not start"

"$py" "$src/tests/front/front.py" --listen 127.0.0.1:0 --upstream "$MOTO" >"$T/front.out" 2>"$T/front.err" &
PIDS="$PIDS $!"
for i in $(seq 100); do
	FRONT_PORT=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$T/front.out")
	[ -n "$FRONT_PORT" ] && break
	sleep 0.1
done
[ -n "$FRONT_PORT" ] || die "the front did not start: $(cat "$T/front.err")"
FRONT=http://127.0.0.1:$FRONT_PORT

SSHD_PORT=$(free_port)
mkdir -p "$T/sshd" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$T/sshd/host_ed25519" >/dev/null
cat >"$T/sshd/keys.sh" <<EOF
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
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
MaxStartups 100
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$T/sshd/sshd_config" 2>"$T/sshd/log" &
PIDS="$PIDS $!"
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$SSHD_PORT") 2>/dev/null && break; sleep 0.1; done

ec2() {
	curl -s -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \
		--data "Version=2016-11-15&$1" "$MOTO/"
}

# ---- the work ----
mkdir -p "$T/work" "$T/dest"
cd "$T/work" || exit 1
head -c $((size_mb * 1024 * 1024)) /dev/urandom >blob.bin
size=$(stat -c %s blob.bin)

cat >kiln.json <<EOF
{
  "name": "bench",
  "source_image": "$SOURCE_AMI",
  "instance_type": "t3.micro",
  "ssh_username": "root",
  "ssh_host": "127.0.0.1",
  "ssh_port": $SSHD_PORT,
  "ssh_timeout_s": 30,
  "variables": {"dest": ""},
  "provisioners": [
    {"type": "shell", "inline": ["echo provisioning", "uname -a", "id", "df -h / | tail -n1"]},
    {"type": "file", "source": "blob.bin", "destination": "{{var dest}}"}
  ]
}
EOF
cat >packer.json <<EOF
{
  "variables": {"dest": ""},
  "builders": [{
    "type": "amazon-ebs",
    "region": "us-east-1",
    "access_key": "testing",
    "secret_key": "testing",
    "custom_endpoint_ec2": "$FRONT",
    "skip_region_validation": true,
    "skip_credential_validation": true,
    "skip_metadata_api_check": true,
    "source_ami": "$SOURCE_AMI",
    "instance_type": "t3.micro",
    "communicator": "ssh",
    "ssh_username": "root",
    "ssh_host": "127.0.0.1",
    "ssh_port": $SSHD_PORT,
    "ssh_timeout": "30s",
    "ami_name": "bench-packer-{{timestamp}}-{{uuid}}"
  }],
  "provisioners": [
    {"type": "shell", "inline": ["echo provisioning", "uname -a", "id", "df -h / | tail -n1"]},
    {"type": "file", "source": "blob.bin", "destination": "{{user \`dest\`}}"}
  ]
}
EOF

# Watches a destination file from its first byte to its full size: "start_ns end_ns" in $2.
watch_upload() { # PATH OUTFILE
	"$py" - "$1" "$size" "$2" <<'EOF' &
import os, sys, time
path, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start = end = None
deadline = time.time() + 300
while time.time() < deadline:
    try:
        n = os.stat(path).st_size
    except FileNotFoundError:
        n = -1
    now = time.monotonic_ns()
    if n > 0 and start is None:
        start = now
    if n >= size:
        end = now
        break
    time.sleep(0.001)
open(out, "w").write("%s %s\n" % (start or 0, end or 0))
EOF
	WATCH_PID=$!
}

export AWS_ENDPOINT_URL=$FRONT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	AWS_REGION=us-east-1 KILN_STATE_DIR=$T/kiln-state NO_COLOR=1 CHECKPOINT_DISABLE=1 \
	PACKER_CACHE_DIR=$T/packer-cache PACKER_CONFIG_DIR=$T/packer-config HOME=$T/home
mkdir -p "$HOME"

# one RUN: TOOL N; appends "tool wall_ms ec2_calls other_calls rss_kb upload_bps" to results
run_one() {
	local tool=$1 n=$2 dest=$T/dest/$1-$2.bin t0 t1 rc
	curl -s -XPOST "$FRONT/__front/reset" >/dev/null
	watch_upload "$dest" "$T/watch-$tool-$n"
	t0=$(date +%s%N)
	if [ "$tool" = kiln ]; then
		/usr/bin/time -v -o "$T/time-$tool-$n" "$KILN" build kiln.json --var "dest=$dest" --json \
			>"$T/out-$tool-$n" 2>"$T/err-$tool-$n"
	else
		/usr/bin/time -v -o "$T/time-$tool-$n" packer build -var "dest=$dest" packer.json \
			>"$T/out-$tool-$n" 2>"$T/err-$tool-$n"
	fi
	rc=$?
	t1=$(date +%s%N)
	wait "$WATCH_PID" 2>/dev/null
	if [ "$rc" != 0 ] || ! cmp -s blob.bin "$dest"; then
		echo "$tool run $n FAILED (rc $rc): see $T/out-$tool-$n, $T/err-$tool-$n" >&2
		KEEP=1
		return 1
	fi
	rm -f "$dest"
	local stats rss watch
	stats=$(curl -s "$FRONT/__front/stats")
	rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time-$tool-$n")
	read -r ws we <"$T/watch-$tool-$n"
	"$py" - "$tool" "$(((t1 - t0) / 1000000))" "$stats" "$rss" "$ws" "$we" "$size" "$T/out-$tool-$n" >>"$T/results" <<'EOF'
import json, sys
tool, wall, stats, rss, ws, we, size, out = sys.argv[1:]
own = 0
if tool == "kiln":
    # kiln's own account of its upload, from the --json result event
    last = json.loads(open(out).read().splitlines()[-1])
    own = int(last["bytes_uploaded"] / (last["upload_ms"] / 1000)) if last.get("upload_ms") else 0
req = json.loads(stats)["requests"]
ec2 = sum(n for k, n in req.items() if k.startswith("ec2:"))
other = sum(n for k, n in req.items() if not k.startswith("ec2:"))
ws, we = int(ws), int(we)
bps = int(size) / ((we - ws) / 1e9) if we > ws else 0
print(tool, wall, ec2, other, rss, int(bps), json.dumps(req, sort_keys=True).replace(" ", ""), own)
EOF
	echo "  $tool run $n: $(tail -n1 "$T/results" | cut -d' ' -f2-6)" >&2
}

# OpenSSH's sftp, with a key pair imported into moto so the sshd takes it
ssh-keygen -q -t ed25519 -N '' -f "$T/sftp_key" >/dev/null
pub=$(cut -d' ' -f1,2 "$T/sftp_key.pub")
ec2 "Action=ImportKeyPair&KeyName=bench-sftp&PublicKeyMaterial=$(printf '%s' "$pub" | base64 -w0 | sed 's/+/%2B/g; s/=/%3D/g; s/\//%2F/g')" >/dev/null
sftp_one() {
	local n=$1 dest=$T/dest/sftp-$1.bin
	watch_upload "$dest" "$T/watch-sftp-$n"
	printf 'put %s %s\n' "$T/work/blob.bin" "$dest" >"$T/sftp.batch"
	sftp -q -i "$T/sftp_key" -P "$SSHD_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -b "$T/sftp.batch" root@127.0.0.1 >/dev/null 2>"$T/err-sftp-$n"
	wait "$WATCH_PID" 2>/dev/null
	cmp -s blob.bin "$dest" || { echo "sftp run $n FAILED" >&2; return 1; }
	rm -f "$dest"
	read -r ws we <"$T/watch-sftp-$n"
	"$py" -c 'import sys; ws, we, size = map(int, sys.argv[1:]); print("sftp", 0, 0, 0, 0, int(size / ((we - ws) / 1e9)) if we > ws else 0, "{}", 0)' \
		"$ws" "$we" "$size" >>"$T/results"
	echo "  sftp run $n: $(tail -n1 "$T/results" | cut -d' ' -f6) B/s" >&2
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "packer $(packer version | head -n1 | cut -d' ' -f2), kiln $("$KILN" version | cut -d' ' -f2), $size_mb MB upload, $runs runs each, alternating"
# one warm-up of each (moto loads its AMI catalogue on first use), not counted
curl -s -XPOST "$FRONT/__front/reset" >/dev/null
packer build -var "dest=$T/dest/warm-p.bin" packer.json >"$T/warm-packer" 2>&1 || die "packer warm-up failed: $(tail -5 "$T/warm-packer")"
"$KILN" build kiln.json --var "dest=$T/dest/warm-k.bin" >"$T/warm-kiln" 2>&1 || die "kiln warm-up failed: $(tail -5 "$T/warm-kiln")"
rm -f "$T"/dest/warm-*
: >"$T/results"
for n in $(seq "$runs"); do
	run_one packer "$n" || die "packer failed"
	run_one kiln "$n" || die "kiln failed"
	sftp_one "$n" || die "sftp failed"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

leftover=$(ec2 'Action=DescribeInstances&Filter.1.Name=instance-state-name&Filter.1.Value.1=running&Filter.1.Value.2=pending' | tr '<' '\n' | sed -n 's/^instanceId>//p' | wc -l)
"$py" - "$T/results" "$leftover" <<'EOF'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def col(tool, i):
    return [float(r[i]) for r in rows if r[0] == tool]
med = {t: {k: statistics.median(col(t, i)) for k, i in
           (("wall", 1), ("ec2", 2), ("other", 3), ("rss", 4), ("bps", 5))}
       for t in ("packer", "kiln", "sftp")}
p, k, s = med["packer"], med["kiln"], med["sftp"]
print()
print("%-28s %14s %14s" % ("", "packer 1.6.6", "kiln"))
print("%-28s %14.2f %14.2f" % ("median wall time (s)", p["wall"] / 1000, k["wall"] / 1000))
print("%-28s %14d %14d" % ("EC2 API calls (median)", p["ec2"], k["ec2"]))
print("%-28s %14d %14d" % ("other API calls (SSM...)", p["other"], k["other"]))
print("%-28s %14.1f %14.1f" % ("peak RSS (MB, median)", p["rss"] / 1024, k["rss"] / 1024))
print("%-28s %14.1f %14.1f" % ("upload (MB/s, median)", p["bps"] / 1e6, k["bps"] / 1e6))
print("%-28s %14s %14.1f" % ("  kiln's own upload_ms view", "", statistics.median(col("kiln", 7)) / 1e6))
print("%-28s %14s %14.1f" % ("OpenSSH sftp upload (MB/s)", "", s["bps"] / 1e6))
print()
kiln_calls = [r[6] for r in rows if r[0] == "kiln"][-1]
packer_calls = [r[6] for r in rows if r[0] == "packer"][-1]
print("EC2 calls of one run, packer:", packer_calls)
print("EC2 calls of one run, kiln:  ", kiln_calls)
print()
checks = [
    ("median wall <= 1/2 of Packer's", k["wall"] <= p["wall"] / 2, "%.2fx" % (k["wall"] / p["wall"])),
    ("EC2 calls <= Packer's", k["ec2"] <= p["ec2"], "%d vs %d" % (k["ec2"], p["ec2"])),
    ("peak RSS <= 1/4 of Packer's", k["rss"] <= p["rss"] / 4, "%.2fx" % (k["rss"] / p["rss"])),
    ("upload >= 0.9 of OpenSSH sftp", k["bps"] >= 0.9 * s["bps"], "%.2fx" % (k["bps"] / s["bps"])),
    ("no instance left running", int(sys.argv[2]) == 0, sys.argv[2]),
]
for what, ok, detail in checks:
    print("%-4s %-34s %s" % ("PASS" if ok else "FAIL", what, detail))
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
EOF
