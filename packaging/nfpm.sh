#!/usr/bin/env bash
# packaging/nfpm.sh
#
# Makes sure the nfpm CLI (github.com/goreleaser/nfpm/v2/cmd/nfpm at
# $NFPM_VERSION, default v2.45.2; later versions do not build here: one of
# their dependencies' hosts is refused by the module proxy) is built and
# cached, and prints its path on stdout (the last line; progress goes to
# stderr).
#
#   GOBIN=<temp dir> go install github.com/goreleaser/nfpm/v2/cmd/nfpm@VERSION
#
# The binary is cached at $CACHE/nfpm/VERSION/nfpm. It is built in a
# temporary directory beside it and renamed into place, so a killed build
# never leaves a half binary; an flock serialises concurrent callers.
# Cold 31 s here with empty Go caches (RIG.md measured 70 s), then instant.
#
# Environment:
#   MONAGENT_RIG_CACHE  cache directory (default /var/cache/monagent-rig)
#   NFPM_VERSION        module version (default v2.45.2)
#   GO                  go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
VERSION="${NFPM_VERSION:-v2.45.2}"
MODULE=github.com/goreleaser/nfpm/v2/cmd/nfpm
BASE="$CACHE/nfpm"
OUT="$BASE/$VERSION/nfpm"
LOG="$BASE/$VERSION.build.log"
LOCK_WAIT=900

say() { printf 'nfpm.sh: %s\n' "$*" >&2; }
die() { printf 'nfpm.sh: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 0 ] || { echo "usage: $0" >&2; exit 2; }

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

# works BINARY: the binary runs and reports the wanted version.
works() {
	[ -x "$1" ] || return 1
	local v
	v=$(timeout 20 "$1" --version 2>/dev/null) || return 1
	case "$v" in *"${VERSION#v}"*) return 0 ;; *) return 1 ;; esac
}

if works "$OUT"; then
	say "cached: $OUT"
	echo "$OUT"
	exit 0
fi

mkdir -p "$BASE" || die "cannot create the cache directory $BASE"
exec 9>"$BASE/$VERSION.lock"
flock -n 9 || say "another caller is building nfpm; waiting (at most $LOCK_WAIT s) for $BASE/$VERSION.lock"
flock -w "$LOCK_WAIT" 9 || die "timed out after $LOCK_WAIT s waiting for $BASE/$VERSION.lock (another build stuck?); end it or remove the lock"
if works "$OUT"; then # another caller built it while we waited
	say "cached (built by another caller): $OUT"
	echo "$OUT"
	exit 0
fi

[ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || die "go not found (looked for go on PATH and /usr/local/go/bin/go); install Go or set GO=/path/to/go"

tmp=$(mktemp -d "$BASE/.build-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

t0=$(date +%s)
say "building $MODULE@$VERSION (cold 30-70 s; log $LOG)"
: >"$LOG"
# From the temp dir: outside any module, so no go.mod/go.sum is touched.
# Bounded: a stalled proxy must not hang the build for ever.
if ! (cd "$tmp" && CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$tmp/bin" \
	timeout 1200 "$GO" install -trimpath -ldflags "-s -w -X main.version=$VERSION" "$MODULE@$VERSION") >>"$LOG" 2>&1; then
	tail -n 30 "$LOG" >&2
	die "go install $MODULE@$VERSION failed or took over 1200 s (last lines above; full log $LOG): is the Go module proxy reachable (GOPROXY=$("$GO" env GOPROXY))?"
fi
works "$tmp/bin/nfpm" || die "the built $tmp/bin/nfpm does not run or does not report version ${VERSION#v}: $("$tmp/bin/nfpm" --version 2>&1 | head -n 3)"

mkdir -p "$BASE/$VERSION"
mv -f "$tmp/bin/nfpm" "$OUT"
say "built $OUT in $(($(date +%s) - t0)) s ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
