#!/bin/bash
# bench/ssh-upload.sh: kiln's SFTP upload (libssh2, provisioners/ssh.c) against
# OpenSSH's sftp, to the same loopback sshd, alternating, RUNS runs each.
#
#   bench/ssh-upload.sh            # 200 MB, 3 runs each
#   SIZE_MB=50 RUNS=5 bench/ssh-upload.sh
#
# Both sides are timed the same way: the wall time of the whole client
# process (start, key exchange, authentication, upload, close), so the
# connection setup is in both. Each side negotiates its own default cipher
# with the sshd (OpenSSH: chacha20-poly1305; kiln's libssh2 1.10: aes128-ctr
# with hmac-sha2-256); a third column runs sftp with kiln's cipher and MAC,
# for reference. Every copy is compared with the source.
# Needs root (sshd) and openssh-server/openssh-client; the machine may be
# shared: the load average is printed before and after.
set -euo pipefail

src_dir=$(cd "$(dirname "$0")/.." && pwd)
build=${KILN_BENCH_BUILD:-$src_dir/build/release}
size_mb=${SIZE_MB:-200}
runs=${RUNS:-3}

if [ "$(id -u)" != 0 ]; then
	echo "ssh-upload: skipped: sshd needs root" >&2
	exit 77
fi
for f in /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh-keygen; do
	[ -x "$f" ] || { echo "ssh-upload: skipped: no $f" >&2; exit 77; }
done

echo "building ssh_upload in $build ..."
cmake -S "$src_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build "$build" --target ssh_upload -j 2 >/dev/null
bin=$build/bench/ssh_upload

tmp=$(mktemp -d /tmp/kiln-bench-ssh.XXXXXX)
sshd_pid=
cleanup() {
	if [ -n "$sshd_pid" ]; then
		kill "$sshd_pid" 2>/dev/null || true
		wait "$sshd_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$tmp/host" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$tmp/client" </dev/null
cp "$tmp/client.pub" "$tmp/authorized_keys"
# a random high port nothing answers on
while :; do
	port=$((20000 + RANDOM % 40000))
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
done
mkdir -p /run/sshd
cat >"$tmp/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $tmp/host
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
sshd_pid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.05
done

echo "making a ${size_mb} MB file of random bytes ..."
head -c "${size_mb}M" /dev/urandom >"$tmp/src"
bytes=$(stat -c %s "$tmp/src")

now() { date +%s.%N; }
rate() { awk -v b="$bytes" -v t0="$1" -v t1="$2" 'BEGIN { printf "%.1f", b / 1e6 / (t1 - t0) }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

sftp_opts=(-q -b - -i "$tmp/client" -P "$port" -o BatchMode=yes
	-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

run_kiln() {
	local t0 t1 out
	rm -f "$tmp/dst"
	t0=$(now)
	out=$("$bin" 127.0.0.1 "$port" root "$tmp/client" "$tmp/client.pub" "$tmp/src" "$tmp/dst")
	t1=$(now)
	cmp -s "$tmp/src" "$tmp/dst" || { echo "kiln's copy differs" >&2; exit 1; }
	echo "$(rate "$t0" "$t1") $(echo "$out" | awk '{ print $3 }')"
}

run_sftp() {
	local t0 t1
	rm -f "$tmp/dst"
	t0=$(now)
	echo "put $tmp/src $tmp/dst" | sftp "${sftp_opts[@]}" "$@" "root@127.0.0.1" >/dev/null
	t1=$(now)
	cmp -s "$tmp/src" "$tmp/dst" || { echo "sftp's copy differs" >&2; exit 1; }
	rate "$t0" "$t1"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"
printf '%-5s %14s %20s %14s %24s\n' run "kiln MB/s" "(upload only MB/s)" "sftp MB/s" "sftp aes128-ctr MB/s"
: >"$tmp/kiln" ; : >"$tmp/sftp" ; : >"$tmp/sftp_ctr"
for i in $(seq "$runs"); do
	k=$(run_kiln)
	s=$(run_sftp)
	c=$(run_sftp -c aes128-ctr -o MACs=hmac-sha2-256)
	echo "${k%% *}" >>"$tmp/kiln"
	echo "$s" >>"$tmp/sftp"
	echo "$c" >>"$tmp/sftp_ctr"
	printf '%-5s %14s %20s %14s %24s\n' "$i" "${k%% *}" "(${k##* })" "$s" "$c"
done
km=$(median <"$tmp/kiln")
sm=$(median <"$tmp/sftp")
cm=$(median <"$tmp/sftp_ctr")
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median: kiln $km MB/s, sftp $sm MB/s (default cipher), sftp $cm MB/s (aes128-ctr)"
awk -v k="$km" -v s="$sm" -v c="$cm" 'BEGIN {
	printf "ratio kiln/sftp: %.2f (target >= 0.90); kiln/sftp-aes128-ctr: %.2f\n", k / s, k / c }'
