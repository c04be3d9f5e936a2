#!/usr/bin/env bash
# rig/registry/registry.sh ensure | push [IMAGE...] | stop
#
# A container registry on this host's loopback, from which the Docker engine
# inside a simulated instance pulls the seed stack's images, as a docker.io
# mirror (registry-mirrors in the instance's /etc/docker/daemon.json): the
# pull is real work, as on EC2, with images built on this host.
#
#   ensure  installs Debian's docker-registry (2.8.2) with apt when it is
#           missing and, unless it already answers, starts
#           `docker-registry serve` detached (setsid; no systemd here) on
#           $MONAGENT_RIG_REGISTRY (default 127.0.0.1:5115), with its
#           storage, config, pid file and log under $CACHE/registry; waits,
#           bounded ($REGISTRY_WAIT s, default 30), until GET /v2/ answers.
#           A port held by anything else is an error naming the holder.
#   push    ensure, then for each IMAGE (default: every image of the seed
#           stack a docker.io mirror can serve, i.e. all but the ghcr.io
#           GitHub Actions exporter) tags it ADDR/IMAGE and pushes it,
#           unless the registry already holds that image's digest (the
#           image's RepoDigests name the manifest the registry serves for
#           the tag). The images must exist (rig/images/build.sh).
#   stop    stops the registry this script started (its storage stays).
#
# The registry keeps running after the script, as a cache daemon, like the
# engine of rig/docker/dockerd.sh. Progress goes to stderr; ensure and push
# print the registry's address (HOST:PORT) on stdout. Idempotent;
# concurrent callers are serialised by an flock on $CACHE/registry/registry.lock.
# Needs root.
#
# Environment:
#   MONAGENT_RIG_CACHE     cache directory (default /var/cache/monagent-rig)
#   MONAGENT_RIG_REGISTRY  loopback address to serve on (default 127.0.0.1:5115;
#                          5000, the usual port, is where Debian's own
#                          docker-registry.service listens on a systemd host)
#   REGISTRY_WAIT          seconds to wait for the registry to answer (default 30)
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
DIR="$CACHE/registry"
ADDR="${MONAGENT_RIG_REGISTRY:-127.0.0.1:5115}"
WAIT="${REGISTRY_WAIT:-30}"
CONFIG="$DIR/config.yml"
PIDFILE="$DIR/registry.pid"
LOG="$DIR/registry.log"
# The seed stack's images a docker.io mirror serves (rig/images/build.sh
# builds them under these tags).
DEFAULT_IMAGES=(
	prom/prometheus:v3.9.1
	grafana/grafana:12.3.0
	prom/node-exporter:v1.8.2
	grafana/loki:3.0.0
	grafana/promtail:3.0.0
	grafana/tempo:2.6.1
	turbot/steampipe:latest
)

say() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { printf 'registry.sh: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
usage() { echo "usage: $0 ensure | push [IMAGE...] | stop" >&2; exit 2; }

[ "$#" -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
ensure | stop) [ "$#" -eq 0 ] || usage ;;
push) ;;
*) usage ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts the registry); rerun with sudo"
[[ $ADDR =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+$ ]] ||
	die "MONAGENT_RIG_REGISTRY '$ADDR': want a loopback IPv4 address and port (127.0.0.1:PORT)"
PORT=${ADDR##*:}

mkdir -p "$DIR"
exec 9>"$DIR/registry.lock"
flock -w 600 9 || die "timed out after 600 s waiting for $DIR/registry.lock (another registry.sh is stuck?)"

answers() { curl -fsS --max-time 5 -o /dev/null "http://$ADDR/v2/" 2>/dev/null; }

# our_pid prints the PID of the registry this script started, if it runs.
our_pid() {
	local pid
	[ -s "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ] || return 1
	echo "$pid"
}

install_registry() {
	command -v docker-registry >/dev/null 2>&1 && return 0
	say "docker-registry not found: installing Debian's docker-registry with apt"
	local t0
	t0=$(now)
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends docker-registry </dev/null >"$DIR/apt.log" 2>&1; then
		say "apt-get install failed; running apt-get update and retrying"
		apt-get update -q </dev/null >>"$DIR/apt.log" 2>&1 ||
			die "apt-get update failed (see $DIR/apt.log): check the Debian mirror in /etc/apt/sources.list.d/"
		apt-get install -y -q --no-install-recommends docker-registry </dev/null >>"$DIR/apt.log" 2>&1 ||
			die "apt-get install docker-registry failed (see $DIR/apt.log)"
	fi
	command -v docker-registry >/dev/null 2>&1 || die "docker-registry installed but not on PATH ($PATH)"
	say "installed docker-registry $(dpkg-query -W -f='${Version}' docker-registry) in $(since "$t0") s"
}

write_config() {
	mkdir -p "$DIR/storage"
	cat >"$CONFIG.tmp" <<EOF
# Written by rig/registry/registry.sh: the rig's registry, loopback only.
version: 0.1
log:
  level: warn
  fields:
    service: monagent-rig-registry
storage:
  filesystem:
    rootdirectory: $DIR/storage
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: false
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
	mv -f "$CONFIG.tmp" "$CONFIG"
}

ensure() {
	install_registry
	local pid holder t0 deadline
	if pid=$(our_pid) && answers; then
		say "registry (pid $pid) answers on $ADDR; nothing to do"
		return 0
	fi
	if [ -z "${pid:-}" ]; then
		holder=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | head -n 3)
		[ -z "$holder" ] || die "port $PORT is taken by another program, not this script's registry:
$holder
stop it or choose another address with MONAGENT_RIG_REGISTRY=127.0.0.1:PORT"
		write_config
		say "starting docker-registry on $ADDR, storage $DIR/storage, log $LOG"
		printf '\n=== %s registry.sh starting docker-registry\n' "$(date -Is)" >>"$LOG"
		# setsid: a session of its own, so the caller's process group can
		# end without it; the lock's descriptor is closed so callers that
		# wait for our output to close do not wait for the registry.
		setsid docker-registry serve "$CONFIG" >>"$LOG" 2>&1 </dev/null 9>&- &
		pid=$!
		echo "$pid" >"$PIDFILE"
	else
		say "registry (pid $pid) runs but does not answer yet; waiting for it"
	fi
	t0=$(now)
	deadline=$(($(date +%s) + WAIT))
	until answers; do
		if ! [ -d "/proc/$pid" ]; then
			tail -n 20 "$LOG" >&2 || true
			die "docker-registry (pid $pid) exited before answering; see $LOG (last lines above)"
		fi
		[ "$(date +%s)" -lt "$deadline" ] || {
			tail -n 20 "$LOG" >&2 || true
			die "docker-registry (pid $pid) did not answer GET http://$ADDR/v2/ within $WAIT s; see $LOG"
		}
		sleep 0.1
	done
	say "registry answers on $ADDR after $(since "$t0") s (pid $pid)"
}

# remote_digest IMAGE prints the digest the registry serves for IMAGE's tag
# (nothing if it has none).
remote_digest() {
	local name=${1%:*} tag=${1##*:} headers
	headers=$(curl -fsS --max-time 10 -I \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$ADDR/v2/$name/manifests/$tag" 2>/dev/null) || return 0
	printf '%s\n' "$headers" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }'
}

push_one() {
	local image=$1 dest digest t0
	case "$image" in *:*) ;; *) image="$image:latest" ;; esac
	docker image inspect "$image" >/dev/null 2>&1 ||
		die "no local image $image: build it first (rig/images/build.sh)"
	dest="$ADDR/$image"
	digest=$(remote_digest "$image")
	if [ -n "$digest" ] &&
		docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -qxF "$ADDR/${image%:*}@$digest"; then
		say "$image: cached ($digest)"
		return 0
	fi
	t0=$(now)
	docker tag "$image" "$dest"
	docker push "$dest" >>"$DIR/push.log" 2>&1 || {
		tail -n 20 "$DIR/push.log" >&2 || true
		die "docker push $dest failed; see $DIR/push.log"
	}
	say "$image: pushed as $dest in $(since "$t0") s ($(remote_digest "$image"))"
}

case "$cmd" in
ensure)
	ensure
	echo "$ADDR"
	;;
push)
	ensure
	[ "$#" -gt 0 ] || set -- "${DEFAULT_IMAGES[@]}"
	timeout 10 docker info >/dev/null 2>&1 || die "the host's Docker engine does not answer (rig/docker/dockerd.sh ensure)"
	for image in "$@"; do
		push_one "$image"
	done
	echo "$ADDR"
	;;
stop)
	if pid=$(our_pid); then
		kill "$pid"
		for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
		[ ! -d "/proc/$pid" ] || die "docker-registry (pid $pid) did not stop within 5 s of SIGTERM"
		rm -f "$PIDFILE"
		say "stopped docker-registry (pid $pid); its storage stays in $DIR/storage"
	else
		say "no registry of this script's runs"
	fi
	;;
esac
