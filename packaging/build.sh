#!/usr/bin/env bash
# packaging/build.sh: what `make package` runs.
#
# Builds into $DIST (default dist/, relative to the repository root):
#   monagent                              the static binary (CGO_ENABLED=0
#                                         -trimpath, version and commit stamped,
#                                         as `make build`)
#   monagent_<version>-1_<arch>.deb
#   monagent-<version>-1.<rpm arch>.rpm
# with nfpm (packaging/nfpm.sh builds and caches it) from packaging/nfpm.yaml.
# Earlier monagent packages in $DIST are removed first, so it holds one set.
# Prints the three paths on stdout (progress and timings go to stderr).
#
#   packaging/build.sh --print-version [VERSION]
# prints the package version it would use and exits.
#
# Environment (the Makefile passes VERSION, COMMIT and GO):
#   VERSION            `git describe --tags --always --dirty`, made into a
#                      deb/rpm version: v1.2.3 -> 1.2.3; v1.2.3-rc1 -> 1.2.3~rc1;
#                      v1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234; a bare commit
#                      (no tag) -> 0.0.0+git<commits>.g<hash>; -dirty adds
#                      ".dirty" (v1.2.3-dirty -> 1.2.3+0.dirty). Each sorts
#                      after the one before it, for dpkg and for rpm.
#   PKG_VERSION        the package version as is (overrides VERSION's)
#   COMMIT             stamped into the binary (default: git rev-parse --short HEAD)
#   DIST               output directory (default dist)
#   GO                 go command (default: go on PATH, else /usr/local/go/bin/go)
#   GOARCH             target architecture (default amd64)
#   PKG_MAINTAINER     "Name <address>" (default: this repository's git identity)
#   SOURCE_DATE_EPOCH  mtime of the packaged files (default: the commit's time)
#   MONAGENT_RIG_CACHE where nfpm is cached (default /var/cache/monagent-rig)
set -euo pipefail

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "$0")/.."
ROOT=$(pwd)

git_() { git -C "$ROOT" "$@" 2>/dev/null; }

# pkg_version VERSION: a deb and rpm version for a `git describe` output.
pkg_version() {
	local v=${1#v} dirty= out
	case "$v" in *-dirty) v=${v%-dirty} dirty=1 ;; esac
	if [[ $v =~ ^([0-9]+(\.[0-9]+)*)(-([0-9A-Za-z.]+))?-([0-9]+)-g([0-9a-f]{4,40})$ ]]; then
		# A tag, N commits after it.
		out=${BASH_REMATCH[1]}
		[ -z "${BASH_REMATCH[4]}" ] || out+="~${BASH_REMATCH[4]}"
		out+="+${BASH_REMATCH[5]}.g${BASH_REMATCH[6]}"
	elif [[ $v =~ ^([0-9]+(\.[0-9]+)*)(-([0-9A-Za-z.]+))?$ ]]; then
		# A tag: a release, or a pre-release that sorts before it.
		out=${BASH_REMATCH[1]}
		[ -z "${BASH_REMATCH[4]}" ] || out+="~${BASH_REMATCH[4]}"
	elif [[ $v =~ ^[0-9a-f]{4,40}$ ]]; then
		# No tag: the commit count keeps later builds sorting later.
		local n
		n=$(git_ rev-list --count HEAD) || die "VERSION '$1' is a bare commit and git rev-list --count HEAD failed: tag the commit (vX.Y.Z) or set PKG_VERSION"
		out="0.0.0+git$n.g$v"
	else
		die "cannot make a deb/rpm version of VERSION '$1' (want vX.Y.Z, vX.Y.Z-N-gHASH or a commit hash, as git describe prints): tag the commit or set PKG_VERSION"
	fi
	if [ -n "$dirty" ]; then
		# After the clean build of the same commit, before the next commit's.
		case "$out" in *+*) out+=".dirty" ;; *) out+="+0.dirty" ;; esac
	fi
	printf '%s\n' "$out"
}

VERSION=${VERSION:-$(git_ describe --tags --always --dirty || echo dev)}

if [ "${1:-}" = --print-version ]; then
	[ $# -le 2 ] || die "usage: $0 --print-version [VERSION]"
	pkg_version "${2:-$VERSION}"
	exit 0
fi
[ $# -eq 0 ] || die "usage: $0 | $0 --print-version [VERSION]"

COMMIT=${COMMIT:-$(git_ rev-parse --short HEAD || echo unknown)}
PKG_VERSION=${PKG_VERSION:-$(pkg_version "$VERSION")}
[[ $PKG_VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]] ||
	die "package version '$PKG_VERSION' is not a valid deb and rpm version (a digit, then letters, digits, '.', '+', '~')"
DIST=${DIST:-dist}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
GOARCH=${GOARCH:-amd64}
case "$GOARCH" in
amd64) RPM_ARCH=x86_64 ;;
arm64) RPM_ARCH=aarch64 ;;
*) die "GOARCH '$GOARCH' is not packaged (amd64 or arm64)" ;;
esac
if [ -z "${PKG_MAINTAINER:-}" ]; then
	PKG_MAINTAINER="monagent maintainers <$(git_ config user.email || echo root@localhost)>"
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git_ log -1 --format=%ct || date +%s)}

[ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || die "go not found (looked for go on PATH and /usr/local/go/bin/go); install Go or set GO=/path/to/go"
mkdir -p "$DIST" || die "cannot create the output directory $DIST"
DIST=$(cd "$DIST" && pwd)
# Build output, never to be committed.
[ -e "$DIST/.gitignore" ] || printf '*\n' >"$DIST/.gitignore"

# now: microseconds (bash 5's EPOCHREALTIME); elapsed START: seconds since.
now() { echo "${EPOCHREALTIME/./}"; }
elapsed() {
	local us=$(($(now) - $1))
	printf '%d.%01d s' $((us / 1000000)) $((us % 1000000 / 100000))
}
t0=$(now)

NFPM=$(packaging/nfpm.sh | tail -n 1) || die "packaging/nfpm.sh could not provide nfpm"
[ -x "$NFPM" ] || die "packaging/nfpm.sh printed '$NFPM', which is not an executable"
say "nfpm ready: $NFPM ($(elapsed "$t0"))"

t=$(now)
tmpbin=$(mktemp "$DIST/.monagent.XXXXXX")
trap 'rm -f "$tmpbin"' EXIT
# GOOS and GOARCH are set only for a cross build: with them set to the
# host's own values, Go 1.26.8 here fails a build with an empty build cache
# now and then ("could not import bytes (open : no such file or
# directory)"); without them it does not.
cross=()
[ "$("$GO" env GOOS)" = linux ] || cross+=(GOOS=linux)
[ "$("$GO" env GOARCH)" = "$GOARCH" ] || cross+=(GOARCH="$GOARCH")
env ${cross[@]+"${cross[@]}"} CGO_ENABLED=0 "$GO" build -trimpath \
	-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
	-o "$tmpbin" ./cmd/monagent || die "go build ./cmd/monagent failed"
chmod 0755 "$tmpbin"
mv -f "$tmpbin" "$DIST/monagent"
say "built $DIST/monagent (version $VERSION, commit $COMMIT, $GOARCH) in $(elapsed "$t")"

deb="$DIST/monagent_${PKG_VERSION}-1_${GOARCH}.deb"
rpm="$DIST/monagent-${PKG_VERSION}-1.${RPM_ARCH}.rpm"
shopt -s nullglob
for old in "$DIST"/monagent_*.deb "$DIST"/monagent-*.rpm; do
	rm -f "$old"
done
shopt -u nullglob

export MONAGENT_BINARY="$DIST/monagent" MONAGENT_PKG_VERSION="$PKG_VERSION" MONAGENT_PKG_ARCH="$GOARCH" \
	MONAGENT_PKG_MAINTAINER="$PKG_MAINTAINER" SOURCE_DATE_EPOCH
for p in deb rpm; do
	t=$(now)
	target=$deb
	[ "$p" = deb ] || target=$rpm
	out=$(timeout 120 "$NFPM" package --config packaging/nfpm.yaml --packager "$p" --target "$target" 2>&1) ||
		die "nfpm package --packager $p failed: $out"
	[ -s "$target" ] || die "nfpm package --packager $p made no $target: $out"
	say "built $target in $(elapsed "$t")"
done
say "done in $(elapsed "$t0"): package version $PKG_VERSION"
printf '%s\n' "$DIST/monagent" "$deb" "$rpm"
