#!/bin/bash
# make bench: the boot and no-op figures against their bounds
# (docs/bench.md). Sets up what the tests set up (packages, the rig's
# Docker engine, the Compose plugin and the images), then runs the
# benchmark once; its last line is the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--buildvcs=false}
rig/docker/dockerd.sh ensure
rig/images/build.sh
go test ./test/e2e -run '^$' -bench '^(BenchmarkBoot|BenchmarkACGSOverhead)$' -benchtime 1x -count 1 -timeout 60m "$@"
