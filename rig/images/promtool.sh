#!/usr/bin/env bash
# rig/images/promtool.sh
#
# Builds the real promtool of the Prometheus release the rig's image is
# tagged as (prom/prometheus:v3.9.1; $PROMTOOL_VERSION, default v3.9.1) from
# its module source (github.com/prometheus/prometheus, whose Go module
# versions for release 3.Y.Z are v0.3YY.Z), statically (CGO_ENABLED=0, -tags
# netgo, as Prometheus's .promu.yml does). The image's server stays Debian's
# 2.42; its promtool is this one because Debian's 2.42 promtool has neither
# `check healthy` nor --http.config.file, which a healthcheck against a
# Prometheus with TLS and basic auth needs (the real v3.9.1 image has both).
# Cached at $CACHE/promtool/VERSION/promtool; built in a temp dir and renamed
# into place under an flock. Cold about 3.5 minutes on 2 cores (most of it
# downloading and compiling the service-discovery SDKs), then instant.
# Prints the binary's path on stdout (progress on stderr).
#
# Environment: MONAGENT_RIG_CACHE (default /var/cache/monagent-rig),
# PROMTOOL_VERSION (default v3.9.1), GO.
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
VERSION="${PROMTOOL_VERSION:-v3.9.1}"
MODULE=github.com/prometheus/prometheus
BASE="$CACHE/promtool"
OUTDIR="$BASE/$VERSION"
OUT="$OUTDIR/promtool"
LOG="$BASE/$VERSION.build.log"

say() { printf 'promtool.sh: %s\n' "$*" >&2; }
die() { printf 'promtool.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$#" -eq 0 ] || { echo "usage: $0" >&2; exit 2; }
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

# The module version of a release: v3.9.1 -> v0.309.1; 2.x kept its minor
# (v2.54.1 -> v0.54.1).
modver() {
	local v=${1#v} major minor patch
	IFS=. read -r major minor patch <<<"$v"
	if [ -z "$patch" ] || [ "$major" -lt 2 ]; then
		die "PROMTOOL_VERSION=$1 is not vMAJOR.MINOR.PATCH of Prometheus 2 or later"
	fi
	if [ "$major" -eq 2 ]; then
		printf 'v0.%d.%s\n' "$minor" "$patch"
	else
		printf 'v0.%d%02d.%s\n' "$major" "$minor" "$patch"
	fi
}

works() { [ -x "$1" ] && timeout 20 "$1" --version 2>&1 | grep -q "version ${VERSION#v} "; }

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

mv=$(modver "$VERSION")
tmp=$(mktemp -d "$BASE/.build-$VERSION.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
: >"$LOG"
t0=$(date +%s)
say "building promtool from $MODULE@$mv (Prometheus $VERSION; cold about 3.5 min; log $LOG)"

json=$(cd "$tmp" && GOTOOLCHAIN=local "$GO" mod download -json "$MODULE@$mv" 2>>"$LOG") ||
	die "go mod download $MODULE@$mv failed (see $LOG): is the Go module proxy reachable?"
src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -n "$src" ] && [ -d "$src" ] || die "go mod download -json printed no usable Dir for $MODULE@$mv: $json"
cp -a "$src" "$tmp/src"
chmod -R u+w "$tmp/src"

vp=github.com/prometheus/common/version
(
	cd "$tmp/src"
	CGO_ENABLED=0 GOTOOLCHAIN=local "$GO" build -trimpath -tags netgo,builtinassets \
		-ldflags "-s -w -X $vp.Version=${VERSION#v} -X $vp.Branch=HEAD -X $vp.Revision=module-proxy -X $vp.BuildUser=monagent-rig" \
		-o "$tmp/promtool" ./cmd/promtool
) >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "go build of $MODULE@$mv ./cmd/promtool failed (last lines above; full log $LOG)"; }

works "$tmp/promtool" || die "the built promtool does not report version ${VERSION#v} (see $LOG)"
mkdir -p "$OUTDIR"
mv -f "$tmp/promtool" "$OUT"
say "built $OUT in $(($(date +%s) - t0)) s ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
