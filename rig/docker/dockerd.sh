#!/usr/bin/env bash
# rig/docker/dockerd.sh ensure
#
# Makes sure a Docker engine answers on this host:
#   1. installs Debian's docker.io with apt when dockerd is missing;
#   2. when `docker info` fails, starts dockerd directly (no systemd here),
#      detached, logging to $CACHE/docker/dockerd.log;
#   3. waits, bounded ($DOCKERD_WAIT seconds, default 60, polling every 0.2 s),
#      until `docker info` answers.
# Idempotent: a running engine is left alone. Concurrent callers are serialised
# by an flock on $CACHE/docker/dockerd.lock. Needs root.
#
# Environment:
#   MONAGENT_RIG_CACHE  cache directory (default /var/cache/monagent-rig)
#   DOCKERD_WAIT        seconds to wait for the engine (default 60)
set -euo pipefail

CACHE="${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}"
DIR="$CACHE/docker"
LOG="$DIR/dockerd.log"
WAIT="${DOCKERD_WAIT:-60}"

say() { printf 'dockerd.sh: %s\n' "$*"; }
die() { printf 'dockerd.sh: error: %s\n' "$*" >&2; exit 1; }

usage() { echo "usage: $0 ensure" >&2; exit 2; }
[ "$#" -eq 1 ] && [ "$1" = ensure ] || usage

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts dockerd); rerun with sudo"

mkdir -p "$DIR"
exec 9>"$DIR/dockerd.lock"
flock -w 300 9 || die "timed out after 300 s waiting for $DIR/dockerd.lock (another dockerd.sh is stuck?); remove the holder or the lock"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# 1. Install the engine.
if ! command -v dockerd >/dev/null 2>&1; then
	say "dockerd not found: installing Debian's docker.io with apt"
	t0=$(date +%s)
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends docker.io </dev/null >"$DIR/apt.log" 2>&1; then
		say "apt-get install failed; running apt-get update and retrying"
		apt-get update -q </dev/null >>"$DIR/apt.log" 2>&1 ||
			die "apt-get update failed (see $DIR/apt.log): check the Debian mirror in /etc/apt/sources.list.d/"
		apt-get install -y -q --no-install-recommends docker.io </dev/null >>"$DIR/apt.log" 2>&1 ||
			die "apt-get install docker.io failed (see $DIR/apt.log)"
	fi
	command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd still not on PATH ($PATH)"
	say "installed docker.io $(dpkg-query -W -f='${Version}' docker.io) in $(($(date +%s) - t0)) s"
else
	say "dockerd present: $(command -v dockerd)"
fi
command -v docker >/dev/null 2>&1 || die "docker CLI not on PATH ($PATH); install docker.io or docker-cli"

# 2. Start the engine when it does not answer.
if engine_answers; then
	say "engine answers already (server $(docker version -f '{{.Server.Version}}' 2>/dev/null), API $(docker version -f '{{.Server.APIVersion}}' 2>/dev/null)); nothing to do"
	exit 0
fi

pid=""
if [ -s /var/run/docker.pid ]; then
	pid=$(cat /var/run/docker.pid)
	if [ -d "/proc/$pid" ] && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
		say "dockerd (pid $pid) is running but does not answer yet; waiting for it"
	else
		pid=""
	fi
fi
if [ -z "$pid" ]; then
	say "engine does not answer: starting dockerd, log $LOG"
	# setsid: its own session, so the caller's process group (a test, a CI step)
	# can end without taking dockerd along. All its descriptors go to the log
	# or /dev/null, and the lock's descriptor is closed, so callers that wait
	# for our output to close do not wait for dockerd.
	printf '\n=== %s dockerd.sh starting dockerd\n' "$(date -Is)" >>"$LOG"
	setsid dockerd >>"$LOG" 2>&1 </dev/null 9>&- &
	pid=$!
fi

# 3. Wait, bounded, until it answers.
t0=$(date +%s.%N)
deadline=$(($(date +%s) + WAIT))
until engine_answers; do
	if ! [ -d "/proc/$pid" ]; then
		tail -n 30 "$LOG" >&2 || true
		die "dockerd (pid $pid) exited before answering; see $LOG (last lines above)"
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		tail -n 30 "$LOG" >&2 || true
		die "dockerd (pid $pid) did not answer \`docker info\` within ${WAIT} s; see $LOG (raise DOCKERD_WAIT if the host is slow)"
	fi
	sleep 0.2
done
say "engine answers after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s (dockerd pid $pid, server $(docker version -f '{{.Server.Version}}' 2>/dev/null), API $(docker version -f '{{.Server.APIVersion}}' 2>/dev/null))"
