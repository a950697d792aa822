#!/bin/bash
# scripts/demo.sh KILN: what `make demo` runs, with the path of the kiln binary.
#
# kiln's whole job on its embedded default, the local provider (systemd-nspawn
# containers, overlayfs images, HAProxy), on this machine only:
#
#   1. kiln local up: bridge, apt proxy, the Debian 12 base image (built once)
#   2. build web v1 (images/web: nginx + uWSGI + Django), roll out 3 instances
#      behind the balancer (images/web/fleet.local.json), show a page
#   3. build v2 (a new message on the page), roll it out batch by batch under
#      load (wrk), show the page
#   4. build v3, broken on purpose (its /healthz answers 500): the rollout
#      refuses it and restores the fleet (exit 3), under load
#   5. kiln rollback to v1, under load
#
# Every rollout and the rollback run under HTTP load through the balancer
# (scripts/lib-load.sh); the last line is `requests: N sent, M failed` over all
# of it, and the script exits non-zero if M > 0 or any step misbehaves. The
# fleet is left serving for a look around; `kiln local down` stops it all.
# Traffic: loopback and kiln's own namespaces, plus Debian's mirror (the base
# image and packages, through the apt proxy, cached for the next run).
#
#   KILN_DEMO_LOG   the full log (kiln's output, remote output included);
#                   default /tmp/kiln-demo.log
set -euo pipefail

kiln=${1:?usage: scripts/demo.sh PATH/TO/kiln}
case "$kiln" in /*) ;; *) kiln="$(pwd)/$kiln" ;; esac
[ -x "$kiln" ] || { echo "demo: no kiln binary at '$kiln' (make release builds it)" >&2; exit 1; }
cd "$(dirname "$0")/.."
KILN_SHOWN=${kiln#"$(pwd)/"}
. scripts/lib-load.sh

TEMPLATE=images/web/web.json
FLEET=images/web/fleet.local.json
LOG=${KILN_DEMO_LOG:-/tmp/kiln-demo.log}
LISTEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["load_balancer"]["listen"])' "$FLEET")
URL=http://$LISTEN/
export KILN_PROVIDER=local

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { printf '\n'; bold "== $* ($(elapsed))"; }
elapsed() { local s=$((SECONDS - T0)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# ---- can this machine run it? ----
[ "$(id -u)" = 0 ] || die "the local provider needs root (containers, mounts, network namespaces): run 'sudo make demo'"
for tool in systemd-nspawn haproxy apt-cacher-ng mmdebstrap wrk curl python3 ss; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed ('scripts/bootstrap.sh demo' installs it)"
done
# the balancer's port: free, or held by this kiln's own balancer from an earlier run
lb_pid() { cat "${KILN_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/kiln}/local/lb/web/haproxy.pid" 2>/dev/null || true; }
holder=$(ss -Hltnp "sport = :${LISTEN##*:}" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
if [ -n "$holder" ] && [ "$holder" != "$(lb_pid)" ]; then
	die "$LISTEN is taken by pid $holder ($(cat /proc/"$holder"/comm 2>/dev/null)), not by kiln's balancer: free it, or change \"listen\" in $FLEET"
fi

: >"$LOG"
OUT=$(mktemp /tmp/kiln-demo-out.XXXXXX)
RC=$(mktemp /tmp/kiln-demo-rc.XXXXXX)
T0=$SECONDS
TOTAL_SENT=0
TOTAL_FAILED=0
V1= V2= V3=

on_exit() {
	local rc=$?
	load_kill
	rm -f "$OUT" "$RC"
	[ $rc -ne 0 ] && printf '\ndemo: FAILED (exit %d); the full log is %s\n' "$rc" "$LOG"
	echo "requests: $TOTAL_SENT sent, $TOTAL_FAILED failed"
	exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# kiln CMD...: runs kiln, showing its progress lines (not the build's remote
# output: that is in the log); stdout lands in $OUT. Returns kiln's status.
kiln() {
	local a shown=kiln
	for a in "$@"; do
		case "$a" in *[\ \(\)\']*) shown="$shown \"$a\"" ;; *) shown="$shown $a" ;; esac
	done
	printf '$ %s\n' "$shown"
	printf '\n$ %s\n' "$shown" >>"$LOG"
	{ "$kiln" "$@" 2>&1 >"$OUT"; echo $? >"$RC"; } | tee -a "$LOG" |
		{ grep --line-buffered -vE '^(shell|file) #[0-9]+[|!]' || true; }
	cat "$OUT" >>"$LOG"
	cat "$OUT"
	return "$(cat "$RC")"
}

# build ARGS...: builds the web image, sets BUILT to its version
build() {
	kiln build "$TEMPLATE" --manifest /tmp/kiln-demo-manifest.json "$@" || die "the build failed"
	local last
	last=$(tail -1 "$OUT")
	[[ $last =~ ^web@([0-9]+)\ img- ]] || die "the build printed '$last', not 'web@N img-...'"
	BUILT=${BASH_REMATCH[1]}
}

# page: what the balancer serves now, its paragraphs as text
page() {
	printf '$ curl %s\n' "$URL"
	curl -fsS -m 10 "$URL" | sed -n 's/^<p[^>]*>\(.*\)<\/p>$/  \1/p' || true
}

# served_version: the version the balancer serves; all of 6 requests must agree
served_version() {
	local i v seen=
	for i in 1 2 3 4 5 6; do
		v=$(curl -fsS -m 10 "$URL" | sed -n 's/.*from image web version \([0-9]*\)\..*/\1/p')
		[ -n "$v" ] || { echo none; return; }
		[ -z "$seen" ] || [ "$seen" = "$v" ] || { echo mixed; return; }
		seen=$v
	done
	echo "$seen"
}

# under_load WANT_RC kiln ARGS...: runs kiln with wrk hitting the balancer
# (when it serves: a first rollout has nothing to load yet) and adds up.
under_load() {
	local want=$1 rc
	shift
	if curl -fsS -m 5 -o /dev/null "$URL" 2>/dev/null; then
		load_start "$URL"
		rc=0
		"$@" || rc=$?
		load_stop || die "the load generator reported nothing"
		TOTAL_SENT=$((TOTAL_SENT + LOAD_SENT))
		TOTAL_FAILED=$((TOTAL_FAILED + LOAD_FAILED))
		bold "load during it: $LOAD_SENT requests sent, $LOAD_FAILED failed ($LOAD_LINE)"
		[ "$LOAD_FAILED" = 0 ] || printf 'demo: %s requests failed during that step\n' "$LOAD_FAILED" >&2
	else
		echo "(nothing serves at $URL yet: no load during this first rollout)"
		rc=0
		"$@" || rc=$?
	fi
	[ "$rc" = "$want" ] || die "kiln exited $rc, expected $want"
}

cat <<EOF
kiln demo: build a web server image, roll a fleet of 3 onto it behind a load balancer,
upgrade it under load, refuse a broken release, roll back. All on this machine, with the
local provider (systemd-nspawn containers, overlayfs images, HAProxy on $LISTEN).
kiln's progress is shown; everything, the builds' remote output included, is in $LOG.
EOF

step "1. the local cloud: bridge, apt proxy, Debian 12 base image (built once, then cached)"
kiln local up || die "kiln local up failed"

step "2. build the web image (nginx + uWSGI + Django) and roll out 3 instances behind the balancer"
build
V1=$BUILT
under_load 0 kiln rollout "$FLEET" --image "web@$V1"
page
[ "$(served_version)" = "$V1" ] || die "the balancer does not serve web@$V1"

step "3. build the next version (a new message on the page) and roll it out, one instance per batch, under load"
build --var "message=Version $((V1 + 1)): rolled out with zero failed requests."
V2=$BUILT
under_load 0 kiln rollout "$FLEET" --image "web@$V2"
page
[ "$(served_version)" = "$V2" ] || die "the balancer does not serve web@$V2"

step "4. build a broken version (its /healthz answers 500) and try to roll it out, under load"
build --var "healthz_fail=DATABASE_URL is not set (a broken release, on purpose)"
V3=$BUILT
under_load 3 kiln rollout "$FLEET" --image "web@$V3"
bold "kiln refused web@$V3 (exit 3) and restored the fleet; the balancer still serves web@$V2:"
page
[ "$(served_version)" = "$V2" ] || die "after the refused rollout the balancer does not serve web@$V2"

step "5. kiln rollback: back to the image before web@$V2, under load"
under_load 0 kiln rollback "$FLEET"
page
[ "$(served_version)" = "$V1" ] || die "after the rollback the balancer does not serve web@$V1"
kiln status "$FLEET" || die "kiln status failed"

step "done"
kiln images list web || die "kiln images list failed"
cat <<EOF

Built: web@$V1, web@$V2 (new message), web@$V3 (broken, refused). The fleet runs web@$V1 again.
A second 'make demo' builds the next versions, reusing the base image and the cached packages.

Look around (kiln is $KILN_SHOWN):
  curl $URL
  $KILN_SHOWN local status                       # instances, images, balancers, what kiln made
  $KILN_SHOWN images list web --provider local   # the versions
  $KILN_SHOWN status $FLEET
Clean up:
  $KILN_SHOWN local down           # stops everything kiln started; images and caches are kept
  $KILN_SHOWN local down --purge   # and removes every local image and cache
EOF
[ "$TOTAL_FAILED" = 0 ] || die "$TOTAL_FAILED requests failed"
