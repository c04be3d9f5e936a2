#!/bin/bash
# make demo: the simulated EC2 monitoring host, from a blank data volume to
# the running stack, under real systemd (rig/cmd/demo, rig/sim).
#
# awssim on loopback is the AWS account (a stack whose Auto Scaling group
# waits for one signal, the data volume, the seed stack bundle in the scripts
# bucket, the SSM parameters); the instance is a systemd-nspawn boot of a
# Debian bookworm image with monagent's .deb installed by dpkg -i; its
# user-data runs `monagent bootstrap`, which installs Docker inside with apt
# and brings the stack up from images pulled from the rig's registry.
#
# Installs what it needs on a fresh Debian 12 (as root) and caches it under
# $MONAGENT_RIG_CACHE (/var/cache/monagent-rig). Interactive, it keeps the
# instance up until Ctrl-C; otherwise (no terminal, or CI=true) it cleans up
# at once and exits with `monagent smoke`'s status.
#
# Environment: DEMO_DIR (default /tmp/monagent-demo), PORT (awssim's port,
# default 18090), DEMO_WAIT (yes, no, auto).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
DEMO_DIR=${DEMO_DIR:-/tmp/monagent-demo}
PORT=${PORT:-18090}

[ -f ../shared/fixtures/seed-stack/docker-compose.yml ] || [ -n "${MONAGENT_SEED_STACK:-}" ] || {
	echo "demo: the seed stack bundle is not beside the checkout (../shared/fixtures/seed-stack; or set MONAGENT_SEED_STACK)" >&2
	exit 1
}
CGO_ENABLED=0 go build -trimpath -o bin/awssim ./cmd/awssim
CGO_ENABLED=0 go build -trimpath -o bin/demo ./rig/cmd/demo
# exec: Ctrl-C and SIGTERM reach the demo, which cleans up.
exec ./bin/demo -repo . -work "$DEMO_DIR" -awssim bin/awssim -addr "127.0.0.1:$PORT" -wait "${DEMO_WAIT:-auto}"
