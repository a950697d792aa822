#!/bin/bash
# e2e/t0203-build-signals: Ctrl-C (SIGINT) or SIGTERM during provisioning
# stops the build within seconds, exit 4, with everything removed; after
# SIGKILL the temporary resources stay, the next build reports them, and
# `kiln cleanup` removes them.
. "$(dirname "$0")/lib-build.sh"
build_setup

# the remote sleep records its pid, so that this suite can stop it by pid at the end
# (a real instance is terminated with it; the loopback sshd leaves it running)
write_template web.json '' '[{"type": "shell", "inline": ["echo provisioning-started", "sh -c '"'"'echo $$ >>'"$T"'/remote.pids; exec sleep 60'"'"'", "echo never"]}]'

# start a build, wait until the remote command runs; the pid in $bpid
start_build() { # NAME
	"$KILN" build web.json >"$1.out" 2>"$1.err" &
	bpid=$!
	local i
	for i in $(seq 300); do
		grep -q provisioning-started "$1.err" 2>/dev/null && return 0
		kill -0 "$bpid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

for sig in INT TERM; do
	check "SIG$sig: the build reaches provisioning" start_build "sig$sig"
	t0=$(date +%s%N)
	kill -$sig "$bpid"
	wait "$bpid"
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	check "SIG$sig: exit 4 (rc $rc)" [ "$rc" = 4 ]
	check "SIG$sig: stopped within 5 s (${ms} ms)" [ "$ms" -lt 5000 ]
	check "SIG$sig: it says it was interrupted" grep -q "interrupted" "sig$sig.err"
	check "SIG$sig: no image" [ -z "$(images_named web)" ]
	assert_no_leftovers "after SIG$sig"
done

check "SIGKILL: the build reaches provisioning" start_build kill
kill -KILL "$bpid"
wait "$bpid" 2>/dev/null
check "after SIGKILL the instance is still there" [ "$(live_instances | wc -l)" = 1 ]
check "... its key pair" [ "$(kiln_keypairs | wc -l)" = 1 ]
check "... its security group" [ "$(kiln_groups | wc -l)" = 1 ]
check "... and its journal" eval 'ls "$KILN_STATE_DIR"/builds/*.json >/dev/null 2>&1'

write_template other.json '' '[{"type": "shell", "inline": ["true"]}]'
"$KILN" build other.json >other.out 2>other.err
rc=$?
check "the next build succeeds (rc $rc)" [ "$rc" = 0 ]
check "... and reports the leftovers, pointing to kiln cleanup" grep -q "did not finish cleaning up.*run 'kiln cleanup'" other.err

"$KILN" cleanup --json >clean.json 2>clean.err
rc=$?
check "kiln cleanup succeeds (rc $rc)" [ "$rc" = 0 ]
check "it removed the instance, key pair and group of the killed build" "$py" -c '
import json
ev = [json.loads(l) for l in open("clean.json")]
gone = sorted(e["kind"] for e in ev if e["event"] == "resource" and e["action"] == "deleted")
assert gone == ["firewall", "instance", "keypair"], gone
assert ev[-1]["event"] == "result" and ev[-1]["removed"] == 3, ev[-1]'
check "the journal is gone" eval '! ls "$KILN_STATE_DIR"/builds/*.json >/dev/null 2>&1'
assert_no_leftovers "after SIGKILL and kiln cleanup"
[ -f "$T/remote.pids" ] && kill $(cat "$T/remote.pids") 2>/dev/null
finish
