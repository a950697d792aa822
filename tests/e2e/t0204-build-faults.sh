#!/bin/bash
# e2e/t0204-build-faults: with 20% of AWS requests faulted by the test front
# (throttling, 500s, dropped connections, latency before moto; lost
# responses after it), builds still succeed, each with a version of its own,
# and leave nothing behind. Also the front's delays (pending instances and
# images, a security group busy for a while after its instance goes).
. "$(dirname "$0")/lib-build.sh"
BUILD_FRONT=1
build_setup
# One request in five is faulted. With the SDKs' three attempts about one
# call in 125 would still fail for good (0.2^3), and a build makes ~20; ten
# attempts make that a one-in-ten-million event, so a failed build here is
# kiln's fault and not the dice's (as t0120-aws-faults does).
export AWS_MAX_ATTEMPTS=10

write_template web.json '' '[{"type": "shell", "inline": ["echo faulty {{version}}"]}]'
runs=${T0204_RUNS:-5}
prev=0
for seed in $(seq 1 "$runs"); do
	curl -s -XPOST "$FRONT/__front/config" \
		-d '{"seed": '"$seed"', "fault_rate": 0.2, "faults_before": ["throttle", "500", "503", "drop", "reset", "latency"], "latency_ms": 200}' >/dev/null
	"$KILN" build web.json >"f$seed.out" 2>"f$seed.err"
	rc=$?
	check "seed $seed: the build succeeds through 20% faults (rc $rc)" [ "$rc" = 0 ]
	v=$(sed -n 's/^web@\([0-9]*\) ami-.*/\1/p' "f$seed.out")
	check "seed $seed: a new version ($v after $prev)" [ -n "$v" ] && [ "$v" -gt "$prev" ]
	[ -n "$v" ] && prev=$v
	curl -s -XPOST "$FRONT/__front/config" -d '{}' >/dev/null # no faults while checking
	assert_no_leftovers "seed $seed"
done
stats=$(curl -s "$FRONT/__front/stats")
check "the front did fault requests" "$py" -c '
import json, sys
s = json.loads(sys.argv[1])
assert sum(s["faults"].values()) >= 5, s["faults"]' "$stats"
echo "# front stats: $(printf "%s" "$stats" | tr -d "\n ")"

# delays as on AWS: instances pending, images pending, a group in use after its instance goes
curl -s -XPOST "$FRONT/__front/config" \
	-d '{"pending_s": 2, "stopping_s": 1, "shutting_down_s": 2, "image_pending_s": 2, "dependency_violation_s": 2}' >/dev/null
"$KILN" build web.json >d.out 2>d.err
rc=$?
check "with AWS-like delays the build succeeds (rc $rc)" [ "$rc" = 0 ]
assert_no_leftovers "with delays"
finish
