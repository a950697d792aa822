#!/bin/sh
# Builds and runs the CURLOPT_AWS_SIGV4 experiment (docs/sigv4-and-libcurl.md).
# Usage: bench/curl-sigv4/run.sh  (from anywhere; writes nothing in the tree)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c11 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -Wno-format-truncation -I"$root" \
	"$root/bench/curl-sigv4/compare.c" "$root/aws/sigv4.c" "$root/core/buf.c" "$root/core/error.c" \
	$(pkg-config --cflags --libs libcurl libcrypto jansson) -lpthread -o "$out/compare"
"$out/compare" "$root"
