#!/bin/bash
# Runs the whole test suite on a fresh machine: installs what it needs,
# runs every test with the race detector, then a bounded fuzz run of the
# config decoder.
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
echo "== fuzz: config decoder (${FUZZTIME:=20s})"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" -fuzzminimizetime 50x ./internal/config/
echo "== go test -race"
go test -race -count=1 -timeout 20m ./... "$@"
