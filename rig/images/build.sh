#!/usr/bin/env bash
# rig/images/build.sh [--no-plugin] [IMAGE...]
#
# Everything the seed stack and the ACGS bundle need on this host, from one
# command (`make images`):
#   1. a Docker engine that answers (rig/docker/dockerd.sh ensure);
#   2. the Compose v2 plugin (rig/docker/compose-plugin.sh; skipped with --no-plugin);
#   3. a local image under exactly the tag the seed compose file (and the
#      ACGS bundle, examples/acgs) names, for each service (all of them, or
#      the IMAGEs named: prometheus grafana node-exporter loki promtail tempo
#      github-actions-exporter steampipe alertmanager haproxy-exporter).
# Nothing can be pulled here, so every image is FROM scratch and built with
# the legacy builder (DOCKER_BUILDKIT=0) from rig/images/NAME/Dockerfile and a
# rootfs.tar staged by this script:
#   real:      prometheus (Debian bookworm's 2.42, with the promtool of v3.9.1
#              built from the module proxy by rig/images/promtool.sh),
#              node-exporter (Debian's 1.5.0), alertmanager (Debian's 0.25.0,
#              with amtool), haproxy-exporter (Debian's 0.14.0),
#              loki (v3.7.8 built from the module proxy by rig/images/loki.sh);
#   stand-ins: grafana, tempo, promtail, github-actions-exporter, steampipe
#              (static Go programs under rig/standins/NAME, CGO_ENABLED=0).
# Each image is labelled org.monagent.rig.inputs=<sha256 of its Dockerfile and
# rootfs.tar> (the tar is reproducible: sorted, mtime 0, numeric owners), and
# is rebuilt only when no image with that label exists. Prints per image
# "built" or "cached" with timings.
#
# Environment: MONAGENT_RIG_CACHE (default /var/cache/monagent-rig), GO; and
# LOKI_VERSION, PROMTOOL_VERSION for rig/images/loki.sh and promtool.sh.
# Needs root (dockerd, apt, chown of the staged files).
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
export MONAGENT_RIG_CACHE="$CACHE"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
LABEL=org.monagent.rig.inputs

say() { printf 'build.sh: %s\n' "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

declare -A TAG=(
	[prometheus]=prom/prometheus:v3.9.1
	[grafana]=grafana/grafana:12.3.0
	[node-exporter]=prom/node-exporter:v1.8.2
	[loki]=grafana/loki:3.0.0
	[promtail]=grafana/promtail:3.0.0
	[tempo]=grafana/tempo:2.6.1
	[github-actions-exporter]=ghcr.io/labbs/github-actions-exporter:latest
	[steampipe]=turbot/steampipe:latest
	[alertmanager]=prom/alertmanager:v0.25.0
	[haproxy-exporter]=prom/haproxy-exporter:v0.15.0
)
ORDER=(prometheus node-exporter loki grafana tempo promtail github-actions-exporter steampipe alertmanager haproxy-exporter)

plugin=1
selected=()
for a in "$@"; do
	case "$a" in
	--no-plugin) plugin=0 ;;
	-h | --help) sed -n '2,29p' "$0"; exit 0 ;;
	*) [ -n "${TAG[$a]:-}" ] || die "unknown image '$a' (known: ${ORDER[*]})"; selected+=("$a") ;;
	esac
done
[ "${#selected[@]}" -gt 0 ] || selected=("${ORDER[@]}")

[ "$(id -u)" -eq 0 ] || die "must run as root (starts dockerd, runs apt, chowns staged files); rerun with sudo"
for c in tar sha256sum ldd dpkg-deb apt-get flock; do
	command -v "$c" >/dev/null 2>&1 || die "$c not found; this script expects Debian 12"
done

T0=$(now)
"$REPO/rig/docker/dockerd.sh" ensure
if [ "$plugin" = 1 ]; then
	t=$(now)
	compose=$("$REPO/rig/docker/compose-plugin.sh" | tail -n 1)
	say "compose plugin: $compose ($(since "$t") s)"
fi

mkdir -p "$CACHE/images" "$CACHE/debs"
exec 8>"$CACHE/images/build.lock"
flock -n 8 || say "another build.sh is running; waiting (at most 1800 s) for $CACHE/images/build.lock"
flock -w 1800 8 || die "timed out after 1800 s waiting for $CACHE/images/build.lock (another build.sh is running?)"

WORK=$(mktemp -d "$CACHE/images/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- staging helpers ----------------------------------------------------

# base ROOT UID:GID NAME HOME: /tmp (1777), /etc/passwd and /etc/group with
# root, nobody and the image's user, CA certificates.
base() {
	local root=$1 ugid=$2 name=$3 home=$4
	mkdir -p "$root/tmp" "$root/etc/ssl/certs"
	chmod 1777 "$root/tmp"
	{
		echo "root:x:0:0:root:/root:/sbin/nologin"
		echo "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin"
		[ -z "$name" ] || echo "$name:x:${ugid%%:*}:${ugid##*:}:$name:$home:/sbin/nologin"
	} >"$root/etc/passwd"
	{
		echo "root:x:0:"
		echo "nogroup:x:65534:"
		[ -z "$name" ] || [ "${ugid##*:}" = 0 ] || echo "$name:x:${ugid##*:}:"
	} >"$root/etc/group"
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
	fi
}

# libs ROOT BINARY...: copy the shared libraries and the loader the binaries
# need (glibc's, from this Debian 12 host) to the same paths in ROOT.
libs() {
	local root=$1 lib
	shift
	for lib in $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

# deb PACKAGE: download Debian's package once into $CACHE/debs, extract it
# once beside it (FILE.d), and print the extracted directory. Delete
# $CACHE/debs to pick up a newer Debian version.
deb() {
	local pkg=$1 f
	f=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$f" ]; then
		if ! (cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg") >>"$CACHE/debs/apt.log" 2>&1; then
			(export DEBIAN_FRONTEND=noninteractive; apt-get update -q </dev/null >>"$CACHE/debs/apt.log" 2>&1) ||
				die "apt-get update failed (see $CACHE/debs/apt.log): check the Debian mirror"
			(cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg") >>"$CACHE/debs/apt.log" 2>&1 ||
				die "apt-get download $pkg failed (see $CACHE/debs/apt.log)"
		fi
		f=$(ls "$CACHE/debs/${pkg}_"*.deb | head -n 1)
	fi
	if ! [ -d "$f.d" ]; then
		rm -rf "$f.d.tmp"
		dpkg-deb -x "$f" "$f.d.tmp" || die "dpkg-deb -x $f failed (a damaged download? delete it and rerun)"
		mv "$f.d.tmp" "$f.d"
	fi
	echo "$f.d"
}

# standin NAME OUT: build rig/standins/NAME statically.
standin() {
	(cd "$REPO" && CGO_ENABLED=0 GOTOOLCHAIN=local "$GO" build -trimpath -ldflags "-s -w" -o "$2" "./rig/standins/$1") ||
		die "go build ./rig/standins/$1 failed (output above)"
}

# ---- per-image staging: stage_NAME ROOT ----------------------------------

stage_prometheus() {
	local r=$1 x promtool
	x=$(deb prometheus)
	promtool=$("$HERE/promtool.sh" | tail -n 1)
	base "$r" "" "" ""
	mkdir -p "$r/bin" "$r/etc/prometheus" "$r/usr/share/prometheus/console_libraries" "$r/usr/share/prometheus/consoles" "$r/prometheus"
	cp "$x/usr/bin/prometheus" "$r/bin/"
	# Static; v3.9.1's, for `check healthy --http.config.file` (see promtool.sh).
	cp "$promtool" "$r/bin/promtool"
	libs "$r" "$r/bin/prometheus"
	cp -a "$x/usr/share/prometheus/web" "$r/usr/share/prometheus/web"
	cp "$x/etc/prometheus/console_libraries/"* "$r/usr/share/prometheus/console_libraries/"
	cp "$x/etc/prometheus/consoles/"* "$r/usr/share/prometheus/consoles/"
	cp "$HERE/prometheus/prometheus.yml" "$r/etc/prometheus/prometheus.yml"
	chown -R 65534:65534 "$r/etc/prometheus" "$r/prometheus"
}

stage_node-exporter() {
	local r=$1 x
	x=$(deb prometheus-node-exporter)
	base "$r" "" "" ""
	mkdir -p "$r/bin"
	cp "$x/usr/bin/prometheus-node-exporter" "$r/bin/node_exporter"
	libs "$r" "$r/bin/node_exporter"
}

stage_alertmanager() {
	local r=$1 x
	x=$(deb prometheus-alertmanager)
	base "$r" "" "" ""
	mkdir -p "$r/bin" "$r/etc/alertmanager" "$r/alertmanager" "$r/usr/share/prometheus/alertmanager"
	cp "$x/usr/bin/prometheus-alertmanager" "$r/bin/alertmanager"
	cp "$x/usr/bin/amtool" "$r/bin/amtool"
	libs "$r" "$r/bin/alertmanager" "$r/bin/amtool"
	# Debian's build reads the notification templates from here at start
	# (without default.tmpl no configuration applies) and the UI from ui/,
	# of which Debian ships only a placeholder page.
	cp "$x/usr/share/prometheus/alertmanager/default.tmpl" "$x/usr/share/prometheus/alertmanager/email.tmpl" "$r/usr/share/prometheus/alertmanager/"
	cp -a "$x/usr/share/prometheus/alertmanager/no-ui" "$r/usr/share/prometheus/alertmanager/ui"
	cp "$HERE/alertmanager/alertmanager.yml" "$r/etc/alertmanager/alertmanager.yml"
	chown -R 65534:65534 "$r/etc/alertmanager" "$r/alertmanager"
}

stage_haproxy-exporter() {
	local r=$1 x
	x=$(deb prometheus-haproxy-exporter)
	base "$r" "" "" ""
	mkdir -p "$r/bin"
	cp "$x/usr/bin/prometheus-haproxy-exporter" "$r/bin/haproxy_exporter"
	libs "$r" "$r/bin/haproxy_exporter"
}

stage_loki() {
	local r=$1 bin
	bin=$("$HERE/loki.sh" | tail -n 1)
	base "$r" 10001:10001 loki /loki
	mkdir -p "$r/usr/bin" "$r/etc/loki" "$r/loki/rules" "$r/loki/rules-temp"
	cp "$bin" "$r/usr/bin/loki"
	cp "$(dirname "$bin")/loki-docker-config.yaml" "$r/etc/loki/local-config.yaml"
	chown -R 10001:10001 "$r/etc/loki" "$r/loki"
}

stage_grafana() {
	local r=$1
	base "$r" 472:0 grafana /usr/share/grafana
	mkdir -p "$r/usr/share/grafana/bin" "$r/etc/grafana/provisioning/datasources" "$r/etc/grafana/provisioning/dashboards" \
		"$r/var/lib/grafana/plugins" "$r/var/log/grafana"
	standin grafana "$r/usr/share/grafana/bin/grafana"
	chown -R 472:0 "$r/var/lib/grafana" "$r/var/log/grafana" "$r/etc/grafana"
}

stage_tempo() {
	local r=$1
	base "$r" 10001:10001 tempo /var/tempo
	mkdir -p "$r/var/tempo"
	chmod 0700 "$r/var/tempo"
	standin tempo "$r/tempo"
	chown 10001:10001 "$r/var/tempo"
}

stage_promtail() {
	local r=$1
	base "$r" "" "" ""
	mkdir -p "$r/usr/bin" "$r/etc/promtail"
	standin promtail "$r/usr/bin/promtail"
	cp "$HERE/promtail/config.yml" "$r/etc/promtail/config.yml"
}

stage_github-actions-exporter() {
	local r=$1
	base "$r" "" "" ""
	mkdir -p "$r/usr/local/bin"
	standin github-actions-exporter "$r/usr/local/bin/github-actions-exporter"
}

stage_steampipe() {
	local r=$1
	base "$r" 9193:0 steampipe /home/steampipe
	mkdir -p "$r/usr/local/bin" "$r/home/steampipe/.steampipe/config" "$r/workspace"
	standin steampipe "$r/usr/local/bin/steampipe"
	chown -R 9193:0 "$r/home/steampipe" "$r/workspace"
}

# ---- build ---------------------------------------------------------------

human() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

for name in "${selected[@]}"; do
	tag=${TAG[$name]}
	t=$(now)
	ctx="$WORK/ctx-$name"
	mkdir -p "$ctx/rootfs"
	"stage_$name" "$ctx/rootfs"
	tar --sort=name --mtime=@0 --numeric-owner --format=gnu -C "$ctx/rootfs" -cf "$ctx/rootfs.tar" .
	rm -rf "$ctx/rootfs"
	cp "$HERE/$name/Dockerfile" "$ctx/Dockerfile"
	digest=$(cat "$ctx/Dockerfile" "$ctx/rootfs.tar" | sha256sum | cut -c1-64)
	staged=$(since "$t")

	have=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$tag" 2>/dev/null || true)
	if [ "$have" = "$digest" ]; then
		say "$tag: cached ($(since "$t") s; staging $staged s; $(human "$(docker image inspect -f '{{.Size}}' "$tag")"))"
		rm -rf "$ctx"
		continue
	fi
	old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
	other=$(docker images -q --no-trunc --filter "label=$LABEL=$digest" | head -n 1)
	if [ -n "$other" ]; then
		docker tag "$other" "$tag"
		say "$tag: cached (an image with the same inputs existed; tagged it) ($(since "$t") s)"
	else
		tb=$(now)
		if ! DOCKER_BUILDKIT=0 docker build --label "$LABEL=$digest" --label "org.monagent.rig.image=$name" \
			-t "$tag" "$ctx" >"$CACHE/images/$name.build.log" 2>&1; then
			tail -n 20 "$CACHE/images/$name.build.log" >&2
			die "docker build of $tag failed (last lines above; full log $CACHE/images/$name.build.log)"
		fi
		say "$tag: built in $(since "$t") s (staging $staged s, docker build $(since "$tb") s; $(human "$(docker image inspect -f '{{.Size}}' "$tag")"))"
	fi
	# The image the tag pointed to before, now untagged: remove it unless in use.
	if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
		docker rmi "$old" >/dev/null 2>&1 || true
	fi
	rm -rf "$ctx"
done
say "done in $(since "$T0") s"
