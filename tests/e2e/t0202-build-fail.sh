#!/bin/bash
# e2e/t0202-build-fail: a provisioner that fails fails the build (exit 1)
# naming the command and its status, and leaves nothing behind; with
# --on-error abort the instance, its key pair and group are kept, the key
# file really lets one ssh in, and `kiln cleanup` then removes it all.
. "$(dirname "$0")/lib-build.sh"
build_setup

write_template web.json '' '[{"type": "shell", "inline": ["echo step one", ": '"$T"'", "false-command-that-fails 2>/dev/null || exit 7", "echo never"]}]'
"$KILN" build web.json >fail.out 2>fail.err
rc=$?
check "the build fails with exit 1 (rc $rc)" [ "$rc" = 1 ]
check "the error names the command and its status" grep -q 'kiln: error: shell #1: command .false-command-that-fails.* exited with status 7' fail.err
check "nothing on stdout" [ ! -s fail.out ]
check "no image was made" [ -z "$(images_named web)" ]
check "the remote output before the failure was shown" grep -q '| step one' fail.err
assert_no_leftovers "after a failed provisioner"

"$KILN" build web.json --on-error abort >abort.out 2>abort.err
rc=$?
check "with --on-error abort it still fails (rc $rc)" [ "$rc" = 1 ]
check "it says how to ssh in" grep -q 'ssh -i .*\.key -p '"$SSHD_PORT"' root@127.0.0.1' abort.err
check "it says how to clean up" grep -q 'kiln cleanup' abort.err
key=$(sed -n 's/.*ssh -i \([^ ]*\.key\) .*/\1/p' abort.err | head -n1)
check "the key file is 0600" [ "$(stat -c %a "$key" 2>/dev/null)" = 600 ]
check "one instance is kept running" [ "$(live_instances | wc -l)" = 1 ]
check "its key pair is kept" [ "$(kiln_keypairs | wc -l)" = 1 ]
check "its security group is kept" [ "$(kiln_groups | wc -l)" = 1 ]
out=$(ssh -i "$key" -p "$SSHD_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
	-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 echo reached 2>&1)
check "the kept key logs in ($out)" [ "$out" = reached ]

"$KILN" build web.json >next.out 2>next.err
check "the next build reports the kept build as leftover" grep -q "did not finish cleaning up.*kiln cleanup" next.err

"$KILN" cleanup --dry-run >dry.out 2>dry.err
check "cleanup --dry-run says what it would remove" eval 'grep -q "would remove instance" dry.err && grep -q "would remove keypair" dry.err'
check "... and removes nothing" [ "$(live_instances | wc -l)" = 1 ]
"$KILN" cleanup >clean.out 2>clean.err
rc=$?
check "kiln cleanup succeeds (rc $rc)" [ "$rc" = 0 ]
check "it says what it removed" eval 'grep -q "removed instance" clean.err && grep -q "removed firewall" clean.err'
check "the key file is gone" [ ! -e "$key" ]
assert_no_leftovers "after kiln cleanup"
"$KILN" cleanup >again.out 2>again.err
check "a second cleanup finds nothing" grep -q "nothing to clean up" again.err
finish
