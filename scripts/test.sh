#!/bin/bash
# Runs the whole test suite on a fresh machine: installs what it needs
# (packages, the Docker engine, the Compose plugin and the stack's images,
# the instance rootfs), a bounded fuzz run of the config decoder, then every
# test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--buildvcs=false}

echo "== go vet"
go vet ./...
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
echo "== rig: Docker engine, Compose plugin, images (cached under ${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig})"
# Built here, before the tests, so that no test waits on a cold build:
# about 8 minutes the first time on a fresh machine, seconds afterwards.
rig/docker/dockerd.sh ensure
rig/images/build.sh
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as a failure when a worker is mid-call as time runs
# out (go.dev/issue/75804, fixed in Go 1.27). 400000 calls take about 16 s here.
echo "== fuzz: config decoder (${FUZZTIME:=400000x})"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" -fuzzminimizetime 50x ./internal/config/
echo "== go test -race"
go test -race -count=1 -timeout 30m ./... "$@"
