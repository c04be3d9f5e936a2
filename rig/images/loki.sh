#!/usr/bin/env bash
# rig/images/loki.sh
#
# Builds the real Grafana Loki binary (github.com/grafana/loki/v3 at
# $LOKI_VERSION, default v3.7.8) from its module source, statically
# (CGO_ENABLED=0, -tags netgo, as Loki's Makefile does). The module zip lacks
# the nested module pkg/push that its go.mod replaces with ./pkg/push, so that
# module is downloaded at the version go.mod requires and copied in.
# Cached at $CACHE/loki/VERSION/loki (plus loki-docker-config.yaml, the real
# image's default config); built in a temp dir and renamed into place under an
# flock. Cold 5-7 minutes, then instant. Prints the binary's path on stdout
# (progress on stderr).
#
# Environment: MONAGENT_RIG_CACHE (default /var/cache/monagent-rig),
# LOKI_VERSION (default v3.7.8), GO.
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
VERSION="${LOKI_VERSION:-v3.7.8}"
MODULE=github.com/grafana/loki/v3
BASE="$CACHE/loki"
OUTDIR="$BASE/$VERSION"
OUT="$OUTDIR/loki"
LOG="$BASE/$VERSION.build.log"

say() { printf 'loki.sh: %s\n' "$*" >&2; }
die() { printf 'loki.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$#" -eq 0 ] || { echo "usage: $0" >&2; exit 2; }
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

works() { [ -x "$1" ] && [ -f "$OUTDIR/loki-docker-config.yaml" ] && timeout 20 "$1" -version >/dev/null 2>&1; }

if works "$OUT"; then
	say "cached: $OUT"
	echo "$OUT"
	exit 0
fi

mkdir -p "$BASE"
exec 9>"$BASE/$VERSION.lock"
flock -n 9 || say "another caller is building; waiting (at most 1500 s) for $BASE/$VERSION.lock"
flock -w 1500 9 || die "timed out after 1500 s waiting for $BASE/$VERSION.lock (another build stuck?); end it or remove the lock"
if works "$OUT"; then
	say "cached (built by another caller): $OUT"
	echo "$OUT"
	exit 0
fi
[ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || die "go not found (looked for go on PATH and /usr/local/go/bin/go); install Go or set GO=/path/to/go"

tmp=$(mktemp -d "$BASE/.build-$VERSION.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
: >"$LOG"
t0=$(date +%s)
say "building $MODULE@$VERSION (cold 5-7 min; log $LOG)"

moddir() { # module@version -> its directory in the module cache
	local json dir
	json=$(cd "$tmp" && GOTOOLCHAIN=local "$GO" mod download -json "$1" 2>>"$LOG") ||
		die "go mod download $1 failed (see $LOG): is the Go module proxy reachable?"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download -json printed no usable Dir for $1: $json"
	echo "$dir"
}

src=$(moddir "$MODULE@$VERSION")
cp -a "$src" "$tmp/src"
chmod -R u+w "$tmp/src"

# The version of the pkg/push module that go.mod requires (and replaces with ./pkg/push).
pushver=$(awk '$1 == "github.com/grafana/loki/pkg/push" && $2 ~ /^v/ { print $2; exit }' "$tmp/src/go.mod")
[ -n "$pushver" ] || die "no requirement on github.com/grafana/loki/pkg/push in $MODULE@$VERSION's go.mod; this script needs updating for that version"
if ! [ -f "$tmp/src/pkg/push/go.mod" ]; then
	pushdir=$(moddir "github.com/grafana/loki/pkg/push@$pushver")
	mkdir -p "$tmp/src/pkg"
	cp -a "$pushdir" "$tmp/src/pkg/push"
	chmod -R u+w "$tmp/src/pkg/push"
	say "copied github.com/grafana/loki/pkg/push@$pushver into pkg/push"
fi

vp=github.com/grafana/loki/v3/pkg/util/build
(
	cd "$tmp/src"
	CGO_ENABLED=0 GOTOOLCHAIN=local "$GO" build -trimpath -tags netgo \
		-ldflags "-s -w -X $vp.Version=${VERSION#v} -X $vp.Branch=HEAD -X $vp.Revision=module-proxy -X $vp.BuildUser=monagent-rig" \
		-o "$tmp/loki" ./cmd/loki
) >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "go build of $MODULE@$VERSION ./cmd/loki failed (last lines above; full log $LOG)"; }

"$tmp/loki" -version >>"$LOG" 2>&1 || die "the built loki binary does not run (see $LOG)"
mkdir -p "$OUTDIR"
cp "$tmp/src/cmd/loki/loki-docker-config.yaml" "$OUTDIR/loki-docker-config.yaml"
mv -f "$tmp/loki" "$OUT"
say "built $OUT in $(($(date +%s) - t0)) s ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
