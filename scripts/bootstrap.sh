#!/bin/sh
# Install what kiln needs from Debian's packages, and only what is missing.
#
#   scripts/bootstrap.sh build   compilers and libraries to build kiln
#   scripts/bootstrap.sh check   + what the test suites run (sshd, HAProxy, nspawn, ...)
#   scripts/bootstrap.sh demo    + what the local provider's demo runs
#   scripts/bootstrap.sh fuzz    + clang and libFuzzer, for `make fuzz`
#
# Idempotent: a package already installed is not touched; the script says what
# it installs and why, and installs nothing when nothing is missing.
set -eu

what=${1:-build}

build_pkgs="build-essential cmake pkg-config libcurl4-openssl-dev libssl-dev
libjansson-dev libssh2-1-dev libcmocka-dev"
# the e2e suites: a real sshd stands in for the builder's instance, curl feeds
# its AuthorizedKeysCommand, iproute2 for the network namespaces, jq reads
# kiln's --json output and the AWS replies
test_pkgs="openssh-server openssh-client curl iproute2 util-linux procps jq"
# the local provider: containers, base image, apt proxy, load balancer, load
local_pkgs="systemd-container mmdebstrap apt-cacher-ng haproxy wrk uidmap"
# `make fuzz` (docs/fuzzing.md): clang, its runtime libraries (libFuzzer and
# the sanitizers: on Debian 12 libclang-rt-dev is libclang-rt-14-dev, whose
# libclang_rt.fuzzer-x86_64.a is libFuzzer), and llvm for llvm-symbolizer, so
# crash reports name functions and lines. make check does not need them: the
# corpora replay under gcc.
fuzz_pkgs="clang libclang-rt-dev llvm"

case "$what" in
build) want="$build_pkgs" ;;
check) want="$build_pkgs $test_pkgs $local_pkgs" ;;
demo) want="$build_pkgs $test_pkgs $local_pkgs" ;;
bench) want="$build_pkgs $test_pkgs $local_pkgs packer hyperfine" ;;
fuzz) want="$build_pkgs $fuzz_pkgs" ;;
*) echo "usage: $0 build|check|demo|bench|fuzz" >&2; exit 2 ;;
esac

missing=
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "bootstrap: all $(echo $want | wc -w) packages for '$what' are installed"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "bootstrap: missing packages:$missing; run as root or install them with apt-get" >&2
	exit 2
fi

echo "bootstrap: installing for '$what':$missing"
export DEBIAN_FRONTEND=noninteractive
# apt-cacher-ng asks whether to allow HTTPS tunnels; take the default
echo "apt-cacher-ng apt-cacher-ng/tunnelenable boolean false" | debconf-set-selections 2>/dev/null || true
if ! apt-get install -y -q --no-install-recommends $missing >/tmp/kiln-bootstrap.log 2>&1; then
	echo "bootstrap: package lists may be stale; running apt-get update"
	apt-get update -q >>/tmp/kiln-bootstrap.log 2>&1
	apt-get install -y -q --no-install-recommends $missing >>/tmp/kiln-bootstrap.log 2>&1 || {
		tail -20 /tmp/kiln-bootstrap.log >&2
		echo "bootstrap: apt-get install failed; see /tmp/kiln-bootstrap.log" >&2
		exit 1
	}
fi
echo "bootstrap: installed:$missing"
