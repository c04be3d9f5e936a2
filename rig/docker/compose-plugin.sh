#!/usr/bin/env bash
# rig/docker/compose-plugin.sh [--install]
#
# Builds the Docker Compose v2 plugin (github.com/docker/compose/v5 at
# $COMPOSE_VERSION, default v5.6.0) from its module source, the only way it can
# be had here (GitHub is unreachable; `go install` fails on the module's exclude
# directives):
#   go mod download -json github.com/docker/compose/v5@VERSION  -> copy Dir,
#   chmod -R u+w, go build -trimpath -ldflags "-s -w -X .../internal.Version=VERSION"
#   -o docker-compose ./cmd
# The binary is cached at $CACHE/compose/VERSION/docker-compose. It is built in
# a temporary directory beside it and renamed into place, so a killed build
# never leaves a half binary; an flock serialises concurrent callers.
# Cold 85-100 s here (230 s measured elsewhere), then instant. Prints the binary's path on stdout (the
# last line; progress goes to stderr).
#
# --install also links it as a CLI plugin at
# /usr/local/lib/docker/cli-plugins/docker-compose (so `docker compose` works).
# Without it, run the binary directly (standalone mode: `docker-compose -p P up -d`).
#
# Environment:
#   MONAGENT_RIG_CACHE  cache directory (default /var/cache/monagent-rig)
#   COMPOSE_VERSION     module version (default v5.6.0; v5.7.0 needs a
#                       dependency the module proxy refuses)
#   GO                  go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
VERSION="${COMPOSE_VERSION:-v5.6.0}"
MODULE=github.com/docker/compose/v5
BASE="$CACHE/compose"
OUT="$BASE/$VERSION/docker-compose"
LOG="$BASE/$VERSION.build.log"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

say() { printf 'compose-plugin.sh: %s\n' "$*" >&2; }
die() { printf 'compose-plugin.sh: error: %s\n' "$*" >&2; exit 1; }

install=0
for a in "$@"; do
	case "$a" in
	--install) install=1 ;;
	*) echo "usage: $0 [--install]" >&2; exit 2 ;;
	esac
done

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

works() { [ -x "$1" ] && timeout 20 "$1" version >/dev/null 2>&1; }

finish() {
	if [ "$install" = 1 ]; then
		mkdir -p "$PLUGIN_DIR"
		ln -sfn "$OUT" "$PLUGIN_DIR/docker-compose.tmp.$$"
		mv -T "$PLUGIN_DIR/docker-compose.tmp.$$" "$PLUGIN_DIR/docker-compose"
		say "linked $PLUGIN_DIR/docker-compose -> $OUT"
	fi
	echo "$OUT"
	exit 0
}

if works "$OUT"; then
	say "cached: $OUT ($("$OUT" version --short 2>/dev/null))"
	finish
fi

mkdir -p "$BASE"
exec 9>"$BASE/$VERSION.lock"
flock -n 9 || say "another caller is building; waiting (at most 1200 s) for $BASE/$VERSION.lock"
flock -w 1200 9 || die "timed out after 1200 s waiting for $BASE/$VERSION.lock (another build stuck?); end it or remove the lock"
if works "$OUT"; then # another caller built it while we waited
	say "cached (built by another caller): $OUT"
	finish
fi

[ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || die "go not found (looked for go on PATH and /usr/local/go/bin/go); install Go or set GO=/path/to/go"

tmp=$(mktemp -d "$BASE/.build-$VERSION.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

t0=$(date +%s)
say "building $MODULE@$VERSION (cold 1.5-4 min; log $LOG)"
: >"$LOG"
# From the temp dir: outside any module, so no go.mod/go.sum is touched.
json=$(cd "$tmp" && GOTOOLCHAIN=local "$GO" mod download -json "$MODULE@$VERSION" 2>>"$LOG") ||
	die "go mod download $MODULE@$VERSION failed (see $LOG): is the Go module proxy reachable (GOPROXY=$("$GO" env GOPROXY))?"
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download -json printed no usable Dir for $MODULE@$VERSION: $json"

cp -a "$dir" "$tmp/src"
chmod -R u+w "$tmp/src"
(
	cd "$tmp/src"
	CGO_ENABLED=0 GOTOOLCHAIN=local "$GO" build -trimpath \
		-ldflags "-s -w -X $MODULE/internal.Version=$VERSION" \
		-o "$tmp/docker-compose" ./cmd
) >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "go build of $MODULE@$VERSION failed (last lines above; full log $LOG)"; }

got=$("$tmp/docker-compose" version 2>&1) || die "the built binary does not run: $got"
case "$got" in *"$VERSION"*) ;; *) die "the built binary reports '$got', expected $VERSION" ;; esac

mkdir -p "$BASE/$VERSION"
mv -f "$tmp/docker-compose" "$OUT"
say "built $OUT in $(($(date +%s) - t0)) s ($(du -h "$OUT" | cut -f1); $got)"
finish
