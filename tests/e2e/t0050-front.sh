#!/bin/bash
# e2e/t0050-front: the test front (tests/front/front.py) against a real moto,
# through boto3: every fault kind, ClientToken idempotency, the delays, the
# simulated load-balancer health, the throttling buckets, stats and the log.
# Runs inside its own network namespace holding only loopback, so nothing can
# reach a real AWS endpoint, and every server it starts dies with it.
# Extra arguments name tests to run (e.g. TestHealth), as for unittest.
set -eu

src=${KILN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${KILN_PYTHON:-python3}

if ! "$py" -c 'import moto, boto3' 2>/dev/null; then
	echo "skipped: '$py' cannot import moto and boto3 (the pyenv python3 has them)"
	exit 77
fi

if [ -z "${KILN_T0050_NETNS:-}" ]; then
	export KILN_T0050_NETNS=1
	exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up

exec "$py" "$src/tests/front/test_front.py" -v "$@"
